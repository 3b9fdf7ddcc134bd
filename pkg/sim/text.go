package sim

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/igw-dev/igw/pkg/openai"
)

// vocabulary is what simulated models say. Every entry is one token under
// openai's tokenizer (a space and at most five letters), so generated text
// tokenizes back to exactly the tokens that were generated, and a
// conversation that replays an answer shares its KV blocks.
var vocabulary = [...]string{
	" the", " of", " and", " to", " in", " is", " that", " it", " for", " as",
	" with", " was", " on", " be", " by", " this", " are", " or", " from", " at",
	" an", " which", " but", " not", " have", " has", " can", " all", " one", " more",
	" model", " token", " cache", " GPU", " batch", " queue", " route", " fast", " data", " layer",
	" time", " load", " each", " when", " will", " also", " may", " into", " than", " other",
	" block", " state", " value", " graph", " input", " order", " point", " level", " power", " light",
	" water", " small", " large", " early", " later", " first", " last", " next", " good", " great",
	" we", " you", " they", " new", " use", " used", " some", " many", " most", " such",
}

// vocabToken and vocabJSON are the token id and the JSON string literal of
// every vocabulary entry, computed once per process by newVocab.
type vocab struct {
	ids  [len(vocabulary)]uint32
	json [len(vocabulary)][]byte
}

func newVocab() *vocab {
	v := &vocab{}
	for i, w := range vocabulary {
		ids := openai.AppendTokens(nil, w)
		if len(ids) != 1 {
			panic("sim: vocabulary entry " + strconv.Quote(w) + " is not one token")
		}
		v.ids[i] = ids[0]
		v.json[i] = []byte(strconv.Quote(w)) // plain ASCII: Go quoting is valid JSON
	}
	return v
}

// Special tokens of the chat template, each a single token id outside the
// tokenizer's hash range of printable pieces (they are fixed values).
const (
	tokIMStart uint32 = 0xFFFF_FF01
	tokIMEnd   uint32 = 0xFFFF_FF02
)

// appendChatPrompt renders messages with igw-sim's chat template and
// appends the token ids to dst:
//
//	<|im_start|>{role}\n{content}<|im_end|>\n   for every message
//	<|im_start|>assistant\n                     the generation prompt
//
// Each part is tokenized on its own and the markers are single tokens, so a
// conversation that extends another shares its token prefix exactly.
func appendChatPrompt(dst []uint32, messages []openai.ChatMessage) []uint32 {
	for i := range messages {
		m := &messages[i]
		dst = append(dst, tokIMStart)
		dst = openai.AppendTokens(dst, m.Role)
		dst = openai.AppendTokens(dst, "\n")
		dst = openai.AppendTokens(dst, m.Content.Text)
		dst = append(dst, tokIMEnd)
		dst = openai.AppendTokens(dst, "\n")
	}
	dst = append(dst, tokIMStart)
	dst = openai.AppendTokens(dst, "assistant")
	return openai.AppendTokens(dst, "\n")
}

// outputPlan decides what a request generates: how many tokens, which
// ones, and why it stops. It is a pure function of the server seed, the
// request's own seed, the adapter and the prompt, so the same request gives
// the same answer on every replica and every run.
type outputPlan struct {
	words  []uint16 // indices into vocabulary
	finish string
}

// planOutput picks the output. limit is the client's token cap (0 = none),
// room is what max-model-len leaves after the prompt.
func planOutput(seed int64, reqSeed *int64, adapter string, prompt []uint32, limit, room int, ignoreEOS bool, medianLen int) outputPlan {
	var h xxhash.Digest
	h.Reset()
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(seed))
	_, _ = h.Write(buf[:])
	if reqSeed != nil {
		binary.LittleEndian.PutUint64(buf[:], uint64(*reqSeed))
		_, _ = h.Write(buf[:])
	}
	_, _ = h.WriteString(adapter)
	for _, t := range prompt {
		binary.LittleEndian.PutUint32(buf[:4], t)
		_, _ = h.Write(buf[:4])
	}
	rng := rand.New(rand.NewPCG(h.Sum64(), 0x1917))

	n, finish := 0, openai.FinishStop
	switch {
	case ignoreEOS && limit > 0:
		n, finish = limit, openai.FinishLength
	default:
		// Natural answer lengths are long-tailed: log-normal around the
		// median.
		n = max(1, int(math.Round(float64(medianLen)*math.Exp(0.6*rng.NormFloat64()))))
		if limit > 0 && n >= limit {
			n, finish = limit, openai.FinishLength
		}
	}
	if n > room {
		n, finish = room, openai.FinishLength
	}
	words := make([]uint16, n)
	for i := range words {
		words[i] = uint16(rng.IntN(len(vocabulary)))
	}
	return outputPlan{words: words, finish: finish}
}

func (p outputPlan) tokens(v *vocab) []uint32 {
	ids := make([]uint32, len(p.words))
	for i, w := range p.words {
		ids[i] = v.ids[w]
	}
	return ids
}

func (p outputPlan) text(n int) string {
	size := 0
	for _, w := range p.words[:n] {
		size += len(vocabulary[w])
	}
	b := make([]byte, 0, size)
	for _, w := range p.words[:n] {
		b = append(b, vocabulary[w]...)
	}
	return string(b)
}
