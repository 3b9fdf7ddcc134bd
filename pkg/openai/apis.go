package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// The request and response shapes of the APIs besides chat and
// completions that igw sim serves: embeddings, OpenAI's Responses API,
// Anthropic's Messages API and vLLM's tokenizer endpoints. Fields the
// simulator does not act on are accepted and ignored, as vLLM does.

// Object names of these APIs.
const (
	ObjectEmbedding = "embedding"
	ObjectResponse  = "response"
)

// EmbeddingRequest is the body of POST /v1/embeddings.
type EmbeddingRequest struct {
	Model string         `json:"model"`
	Input EmbeddingInput `json:"input"`
	// Dimensions truncates the vector (OpenAI's option); 0: the model's.
	Dimensions *int `json:"dimensions,omitempty"`
	// EncodingFormat is "float" (default) or "base64" (little-endian
	// float32s, what the official SDKs ask for by default).
	EncodingFormat string `json:"encoding_format,omitempty"`
}

// EmbeddingInput is one or more inputs: a string, an array of strings, an
// array of token ids or an array of token-id arrays. Each input is kept as
// text or as token ids.
type EmbeddingInput struct {
	Texts  []string
	Tokens [][]uint32
}

// Len is the number of inputs.
func (in *EmbeddingInput) Len() int { return len(in.Texts) + len(in.Tokens) }

// UnmarshalJSON accepts every shape OpenAI's API accepts for "input".
func (in *EmbeddingInput) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*in = EmbeddingInput{}
	if len(b) == 0 || b[0] == 'n' {
		return errors.New("input must not be null")
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		in.Texts = []string{s}
		return nil
	}
	if b[0] != '[' {
		return errors.New("input must be a string, an array of strings or token ids")
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("input: %w", err)
	}
	if len(raw) == 0 {
		return errors.New("input must not be an empty array")
	}
	switch first := bytes.TrimSpace(raw[0]); {
	case first[0] == '"':
		return json.Unmarshal(b, &in.Texts)
	case first[0] == '[':
		return json.Unmarshal(b, &in.Tokens)
	default:
		var ids []uint32
		if err := json.Unmarshal(b, &ids); err != nil {
			return fmt.Errorf("input token ids: %w", err)
		}
		in.Tokens = [][]uint32{ids}
		return nil
	}
}

// Embedding is one vector of an EmbeddingList. Embedding holds []float32
// or, for encoding_format base64, the base64 string.
type Embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// EmbeddingUsage is the usage of an embeddings request: input tokens only.
type EmbeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// EmbeddingList is the response of POST /v1/embeddings.
type EmbeddingList struct {
	Object string         `json:"object"`
	Data   []Embedding    `json:"data"`
	Model  string         `json:"model"`
	Usage  EmbeddingUsage `json:"usage"`
}

// ResponseRequest is the body of POST /v1/responses.
type ResponseRequest struct {
	Model           string        `json:"model"`
	Input           ResponseInput `json:"input"`
	Instructions    *string       `json:"instructions,omitempty"`
	MaxOutputTokens *int          `json:"max_output_tokens,omitempty"`
	Stream          bool          `json:"stream,omitempty"`
	IgnoreEOS       bool          `json:"ignore_eos,omitempty"`
	Seed            *int64        `json:"seed,omitempty"`
}

// ResponseInput is the Responses API's input: a string (one user message)
// or an array of input items; message items (with a role) are kept, other
// items (tool calls and their outputs) are ignored.
type ResponseInput struct {
	Messages []ChatMessage
}

// UnmarshalJSON accepts a string or an array of input items.
func (in *ResponseInput) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	in.Messages = nil
	switch {
	case len(b) == 0 || b[0] == 'n':
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		in.Messages = []ChatMessage{{Role: "user", Content: MessageContent{Text: s}}}
		return nil
	case b[0] == '[':
		var items []ChatMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return fmt.Errorf("input items: %w", err)
		}
		for _, it := range items {
			if it.Role != "" {
				in.Messages = append(in.Messages, it)
			}
		}
		return nil
	}
	return errors.New("input must be a string or an array of input items")
}

// ResponseUsage is the Responses API's usage, with its own names.
type ResponseUsage struct {
	InputTokens         int                  `json:"input_tokens"`
	InputTokensDetails  PromptTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int                  `json:"output_tokens"`
	OutputTokensDetails ReasoningTokensCount `json:"output_tokens_details"`
	TotalTokens         int                  `json:"total_tokens"`
}

// ReasoningTokensCount is the output breakdown of ResponseUsage.
type ReasoningTokensCount struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// OutputText is a text part of a Responses API message.
type OutputText struct {
	Type        string `json:"type"` // "output_text"
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

// OutputMessage is the assistant message item of a Response's output.
type OutputMessage struct {
	Type    string       `json:"type"` // "message"
	ID      string       `json:"id"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []OutputText `json:"content"`
}

// IncompleteDetails says why a Response is incomplete.
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// Response is the Responses API's response object, returned whole or
// carried by the stream's response.* events.
type Response struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	CreatedAt         int64              `json:"created_at"`
	Status            string             `json:"status"`
	Model             string             `json:"model"`
	Output            []OutputMessage    `json:"output"`
	IncompleteDetails *IncompleteDetails `json:"incomplete_details"`
	Instructions      *string            `json:"instructions"`
	MaxOutputTokens   *int               `json:"max_output_tokens"`
	Error             any                `json:"error"`
	Usage             *ResponseUsage     `json:"usage"`
}

// MessagesRequest is the body of Anthropic's POST /v1/messages.
type MessagesRequest struct {
	Model     string         `json:"model"`
	MaxTokens *int           `json:"max_tokens"`
	Messages  []ChatMessage  `json:"messages"`
	System    MessageContent `json:"system"`
	Stream    bool           `json:"stream,omitempty"`
	IgnoreEOS bool           `json:"ignore_eos,omitempty"`
	Seed      *int64         `json:"seed,omitempty"`
}

// AnthropicText is a text content block.
type AnthropicText struct {
	Type string `json:"type"` // "text"
	Text string `json:"text"`
}

// AnthropicUsage is the Messages API's usage.
type AnthropicUsage struct {
	InputTokens          int `json:"input_tokens"`
	OutputTokens         int `json:"output_tokens"`
	CacheReadInputTokens int `json:"cache_read_input_tokens"`
}

// AnthropicMessage is the Messages API's response (and, empty, the
// message of a stream's message_start event).
type AnthropicMessage struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"` // "message"
	Role         string          `json:"role"`
	Model        string          `json:"model"`
	Content      []AnthropicText `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence *string         `json:"stop_sequence"`
	Usage        AnthropicUsage  `json:"usage"`
}

// TokenizeRequest is the body of vLLM's POST /tokenize: a prompt, or
// chat messages rendered with the chat template.
type TokenizeRequest struct {
	Model               string        `json:"model"`
	Prompt              *string       `json:"prompt"`
	Messages            []ChatMessage `json:"messages"`
	AddGenerationPrompt *bool         `json:"add_generation_prompt"`
}

// TokenizeResponse is vLLM's answer to POST /tokenize.
type TokenizeResponse struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []uint32 `json:"tokens"`
	TokenStrs   []string `json:"token_strs"`
}

// DetokenizeRequest is the body of vLLM's POST /detokenize.
type DetokenizeRequest struct {
	Model  string   `json:"model"`
	Tokens []uint32 `json:"tokens"`
}

// DetokenizeResponse is vLLM's answer to POST /detokenize.
type DetokenizeResponse struct {
	Prompt string `json:"prompt"`
}
