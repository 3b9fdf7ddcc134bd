package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Object names carried in the "object" field of responses.
const (
	ObjectChatCompletion      = "chat.completion"
	ObjectChatCompletionChunk = "chat.completion.chunk"
	ObjectTextCompletion      = "text_completion"
	ObjectList                = "list"
	ObjectModel               = "model"
)

// Finish reasons.
const (
	FinishStop   = "stop"
	FinishLength = "length"
)

// ChatMessage is one turn of a conversation.
type ChatMessage struct {
	Role    string         `json:"role"`
	Content MessageContent `json:"content"`
	Name    string         `json:"name,omitempty"`
}

// MessageContent is a message's text. Clients send it either as a string or
// as an array of content parts; only text parts carry prompt text, so the
// parts' texts are joined with newlines and other parts are ignored.
type MessageContent struct {
	Text string
}

// UnmarshalJSON accepts a string, null, or an array of content parts.
func (c *MessageContent) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || bytes.Equal(b, []byte("null")):
		c.Text = ""
		return nil
	case b[0] == '"':
		return json.Unmarshal(b, &c.Text)
	case b[0] == '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return fmt.Errorf("content parts: %w", err)
		}
		var sb strings.Builder
		for _, p := range parts {
			if p.Type != "text" && p.Type != "input_text" {
				continue
			}
			if sb.Len() > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(p.Text)
		}
		c.Text = sb.String()
		return nil
	default:
		return errors.New("content must be a string or an array of content parts")
	}
}

// MarshalJSON writes the content as a plain string.
func (c MessageContent) MarshalJSON() ([]byte, error) { return json.Marshal(c.Text) }

// StreamOptions asks for extra stream content.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ChatCompletionRequest is the body of POST /v1/chat/completions. Fields the
// simulator and gateway do not act on are accepted and ignored, as vLLM does.
type ChatCompletionRequest struct {
	Model               string         `json:"model"`
	Messages            []ChatMessage  `json:"messages"`
	Stream              bool           `json:"stream,omitempty"`
	StreamOptions       *StreamOptions `json:"stream_options,omitempty"`
	MaxTokens           *int           `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int           `json:"max_completion_tokens,omitempty"`
	// IgnoreEOS is vLLM's extension: generate exactly the token limit.
	IgnoreEOS bool   `json:"ignore_eos,omitempty"`
	Seed      *int64 `json:"seed,omitempty"`
}

// OutputLimit is the client's cap on generated tokens, preferring the newer
// max_completion_tokens; 0 means none given.
func (r *ChatCompletionRequest) OutputLimit() int {
	if r.MaxCompletionTokens != nil {
		return *r.MaxCompletionTokens
	}
	if r.MaxTokens != nil {
		return *r.MaxTokens
	}
	return 0
}

// Prompt is the "prompt" of a text completion: a string, an array of strings,
// an array of token ids, or an array of token-id arrays. Only the first
// prompt of a batch is served (the simulator and gateway serve one sequence
// per request, n=1).
type Prompt struct {
	Text   string
	Tokens []uint32 // set instead of Text when the client sent token ids
}

// UnmarshalJSON accepts every shape OpenAI's API accepts for "prompt".
func (p *Prompt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return errors.New("empty prompt")
	}
	switch b[0] {
	case '"':
		return json.Unmarshal(b, &p.Text)
	case '[':
		var raw []json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return fmt.Errorf("prompt: %w", err)
		}
		if len(raw) == 0 {
			return errors.New("prompt must not be an empty array")
		}
		first := bytes.TrimSpace(raw[0])
		switch {
		case len(first) > 0 && first[0] == '"':
			return json.Unmarshal(first, &p.Text)
		case len(first) > 0 && first[0] == '[':
			return json.Unmarshal(first, &p.Tokens)
		default:
			if err := json.Unmarshal(b, &p.Tokens); err != nil {
				return fmt.Errorf("prompt token ids: %w", err)
			}
			return nil
		}
	default:
		return errors.New("prompt must be a string, an array of strings or an array of token ids")
	}
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	Model         string         `json:"model"`
	Prompt        Prompt         `json:"prompt"`
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *StreamOptions `json:"stream_options,omitempty"`
	MaxTokens     *int           `json:"max_tokens,omitempty"`
	IgnoreEOS     bool           `json:"ignore_eos,omitempty"`
	Seed          *int64         `json:"seed,omitempty"`
}

// PromptTokensDetails breaks prompt tokens down; CachedTokens are the ones
// served from the prefix cache.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// Usage is the token accounting of one request, the basis of token quotas
// and cost metrics.
type Usage struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// ChatCompletion is a non-streamed chat response.
type ChatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage,omitempty"`
}

// ChatChoice is one choice of a ChatCompletion.
type ChatChoice struct {
	Index        int         `json:"index"`
	Message      ChatMessage `json:"message"`
	FinishReason string      `json:"finish_reason"`
}

// ChatCompletionChunk is one SSE event of a streamed chat response.
type ChatCompletionChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []ChatChunkChoice `json:"choices"`
	Usage   *Usage            `json:"usage,omitempty"`
}

// ChatChunkChoice is one choice of a ChatCompletionChunk.
type ChatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        ChatDelta `json:"delta"`
	FinishReason *string   `json:"finish_reason"`
}

// ChatDelta is the increment a chunk adds to the assistant message.
type ChatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// Completion is a text completion response, streamed or not (streamed
// chunks have the same shape with partial text).
type Completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
}

// CompletionChoice is one choice of a Completion.
type CompletionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	FinishReason *string `json:"finish_reason"`
}

// Model is one entry of GET /v1/models. Parent names the base model of a
// LoRA adapter, which is how clients and pickers tell adapters apart.
type Model struct {
	ID      string  `json:"id"`
	Object  string  `json:"object"`
	Created int64   `json:"created"`
	OwnedBy string  `json:"owned_by"`
	Root    string  `json:"root,omitempty"`
	Parent  *string `json:"parent"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}
