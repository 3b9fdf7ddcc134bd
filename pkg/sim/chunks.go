package sim

import (
	"encoding/json"
	"strconv"
)

// chunkEncoder writes the per-token SSE events of one stream without
// encoding JSON per token: the envelope before and after the token text is
// rendered once, and each vocabulary entry's JSON literal is precomputed.
// The bytes are exactly what encoding/json writes for the same chunk.
type chunkEncoder struct {
	vocab        *vocab
	head         []byte // `data: {...,"content":` or `data: {...,"text":`
	tailOpen     []byte // `},"finish_reason":null}]}\n\n` or the completion form
	tailFinished []byte // same with the finish reason filled in, without its value
	chat         bool
}

func newChunkEncoder(id string, created int64, model string, chat bool, v *vocab) *chunkEncoder {
	idJSON, _ := json.Marshal(id)
	modelJSON, _ := json.Marshal(model)
	c := &chunkEncoder{vocab: v, chat: chat}
	object := `"text_completion"`
	if chat {
		object = `"chat.completion.chunk"`
	}
	head := []byte(`data: {"id":`)
	head = append(head, idJSON...)
	head = append(head, `,"object":`+object+`,"created":`+strconv.FormatInt(created, 10)+`,"model":`...)
	head = append(head, modelJSON...)
	if chat {
		head = append(head, `,"choices":[{"index":0,"delta":{"content":`...)
		c.tailOpen = []byte(`},"finish_reason":null}]}` + "\n\n")
		c.tailFinished = []byte(`},"finish_reason":`)
	} else {
		head = append(head, `,"choices":[{"index":0,"text":`...)
		c.tailOpen = []byte(`,"finish_reason":null}]}` + "\n\n")
		c.tailFinished = []byte(`,"finish_reason":`)
	}
	c.head = head
	return c
}

// appendToken appends the event for one generated token; finish is empty
// except on the last token.
func (c *chunkEncoder) appendToken(dst []byte, word uint16, finish string) []byte {
	dst = append(dst, c.head...)
	dst = append(dst, c.vocab.json[word]...)
	if finish == "" {
		return append(dst, c.tailOpen...)
	}
	dst = append(dst, c.tailFinished...)
	dst = strconv.AppendQuote(dst, finish)
	return append(dst, "}]}\n\n"...)
}
