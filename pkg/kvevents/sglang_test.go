package kvevents_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/go-zeromq/zmq4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/kvevents"
)

// sglangBatch encodes a batch as SGLang's publisher does (its kv_events
// module is vLLM's, array-like msgspec structs with omit_defaults): the
// batch [ts, events, attn_dp_rank]; BlockStored with five fields (no
// medium, lora_name or group fields), one event per radix-tree page;
// hashes are Python ints, so signed and often negative.
func sglangBatch(t *testing.T, events ...[]any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	evs := make([]any, len(events))
	for i, e := range events {
		evs[i] = e
	}
	if err := enc.Encode([]any{1.25, evs, 0}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSubscriber_AcceptsSGLangEvents publishes SGLang-shaped batches over a
// real ZeroMQ PUB socket on loopback (page size 1, negative int64 hashes,
// attn_dp_rank, the five-field BlockStored) and checks that the index
// matches prompts by their tokens, follows removals named by negative
// hashes, and empties on AllBlocksCleared.
func TestSubscriber_AcceptsSGLangEvents(t *testing.T) {
	pub := zmq4.NewPub(context.Background())
	defer pub.Close()
	if err := pub.Listen("tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	kvAddr := "tcp://" + pub.Addr().String()
	h := newHarness(t)
	const ep = "127.0.0.1:30000"
	h.mu.Lock()
	h.addrs[ep] = kvAddr
	h.mu.Unlock()
	h.sub.SetEndpoints([]*datastore.Endpoint{datastore.NewEndpoint("sglang-0", ep, "default/pool", datastore.EngineSGLang, nil)})
	h.sub.SetActive(true)

	tokens := []uint32{101, 7, 42, 9, 300, 5}
	hashes := []int64{-8_000_000_000_000_000_001, 12345, -2, 77, -99, 4}
	seq := uint64(0)
	send := func(payload []byte) {
		var s [8]byte
		binary.BigEndian.PutUint64(s[:], seq)
		seq++
		if err := pub.Send(zmq4.NewMsgFrom([]byte("kv@sglang-0@qwen"), s[:], payload)); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(i int) []any {
		var parent any
		if i > 0 {
			parent = hashes[i-1]
		}
		return []any{"BlockStored", []any{hashes[i]}, parent, []any{tokens[i]}, 1, nil}
	}
	prompt := kvevents.PromptHashes(nil, tokens, 1, 100)
	// The slow joiner: publish the first page until the subscription has
	// joined, then the rest in order.
	h.eventually("subscription joined", func() bool {
		send(sglangBatch(t, []any{"AllBlocksCleared"}, stored(0)))
		return h.ix.Match(ep, prompt, 0) == 1
	})
	events := make([][]any, 0, len(tokens)-1)
	for i := 1; i < len(tokens); i++ {
		events = append(events, stored(i))
	}
	send(sglangBatch(t, events...))
	h.eventually("all six pages matched", func() bool { return h.ix.Match(ep, prompt, 0) == 6 })
	if st := h.sub.Stats(ep); st.Malformed != 0 || st.Gaps != 0 {
		t.Errorf("stats %+v", st)
	}
	// Evicting page 3 (a negative hash) cuts the match there.
	send(sglangBatch(t, []any{"BlockRemoved", []any{hashes[3]}}))
	h.eventually("match cut at the removed page", func() bool { return h.ix.Match(ep, prompt, 0) == 3 })
	send(sglangBatch(t, []any{"AllBlocksCleared"}))
	h.eventually("cleared", func() bool { return h.ix.Stats(ep).Blocks == 0 })
}
