// Package openai holds the OpenAI-compatible wire shapes that every part of
// igw speaks: request and response bodies for chat and text completions,
// server-sent event framing, usage accounting and OpenAI-style errors. It
// also holds igw's deterministic approximate tokenizer, so that the
// simulator's token counts and the gateway's token estimates agree.
//
// The package depends on nothing else in igw; everything else may depend on
// it.
package openai
