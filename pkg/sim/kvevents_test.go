package sim

import (
	"context"
	"encoding/binary"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/vmihailenco/msgpack/v5"
)

func TestKVEventsConfig_ParsesVLLMJSONAndRejectsUnknownFields(t *testing.T) {
	k, err := ParseKVEventsConfig(`{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","topic":"kv@a@m","hwm":10,"max_queue_size":5,"buffer_steps":10000}`)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Enabled() || k.Endpoint != "tcp://*:5557" || k.Topic != "kv@a@m" || k.HWM != 10 {
		t.Errorf("parsed %+v", *k)
	}
	if _, err := ParseKVEventsConfig(`{"enable_kv_cache_events":true,"endpiont":"x"}`); err == nil {
		t.Error("unknown field accepted")
	}
	path := filepath.Join(t.TempDir(), "sim.yaml")
	if err := os.WriteFile(path, []byte("kv-events-config:\n  enable_kv_cache_events: true\n  endpoint: tcp://*:6000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := DefaultConfig()
	if err := LoadConfigFile(path, &fromFile); err != nil {
		t.Fatal(err)
	}
	if !fromFile.KVEvents.Enabled() || fromFile.KVEvents.Endpoint != "tcp://*:6000" || fromFile.Validate() != nil {
		t.Errorf("from YAML: %+v", fromFile.KVEvents)
	}
	cfg := DefaultConfig()
	cfg.KVEvents = &KVEventsConfig{EnableKVCacheEvents: true, Endpoint: "ipc:///tmp/x"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "kv-events-config") {
		t.Errorf("ipc endpoint: %v", err)
	}
	cfg.KVEvents = &KVEventsConfig{EnableKVCacheEvents: true, ReplayEndpoint: "tcp://*:5558"}
	if err := cfg.Validate(); err == nil {
		t.Error("replay_endpoint accepted")
	}
}

// TestKVEvents_WireFormat subscribes to a replica over real ZeroMQ TCP
// and checks the frames and msgpack layout of REFERENCE §10: topic,
// 8-byte big-endian sequence numbers from 0, [ts, events] batches,
// BlockStored with parent hashes chaining across batches, BlockRemoved on
// eviction and AllBlocksCleared on reset.
func TestKVEvents_WireFormat(t *testing.T) {
	f := startFleet(t, func(c *Config) {
		c.KVCacheBlocks = 8
		c.BlockSize = 4
		c.TimeScale = 1000
		c.KVEvents = &KVEventsConfig{EnableKVCacheEvents: true, Endpoint: "tcp://127.0.0.1:0"}
	})
	srv := f.Servers()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := zmq4.NewSub(ctx)
	defer sub.Close()
	if err := sub.SetOption(zmq4.OptionSubscribe, "kv@"); err != nil {
		t.Fatal(err)
	}
	if err := sub.Dial(srv.KVEventsAddr()); err != nil {
		t.Fatal(err)
	}
	// A subscription takes effect asynchronously (ZeroMQ's slow joiner):
	// repeat a request that stores blocks until its events arrive.
	got := make(chan zmq4.Msg, 1024)
	go func() {
		for {
			m, err := sub.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- m
		}
	}()
	prompt := `{"model":"m","prompt":"a b c d e f g h i","max_tokens":1,"ignore_eos":true}`
	var first zmq4.Msg
	for first.Frames == nil {
		post(t, f.Addrs()[0], "/v1/completions", prompt)
		select {
		case first = <-got:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no event arrived")
		}
	}
	if len(first.Frames) != 3 || !strings.HasPrefix(string(first.Frames[0]), "kv@"+f.Addrs()[0]+"@m") || len(first.Frames[1]) != 8 {
		t.Fatalf("frames %q", first.Frames)
	}
	var batch []any
	if err := msgpack.Unmarshal(first.Frames[2], &batch); err != nil {
		t.Fatal(err)
	}
	if len(batch) != 2 {
		t.Fatalf("batch %v: want [ts, events]", batch)
	}
	if _, ok := batch[0].(float64); !ok {
		t.Errorf("timestamp %T", batch[0])
	}
	ev := batch[1].([]any)[0].([]any)
	if ev[0] != "BlockStored" || len(ev) != 7 || ev[2] != nil || ev[6] != "GPU" {
		t.Errorf("first event %v", ev)
	}
	if n := len(ev[3].([]any)); n != 4*len(ev[1].([]any)) {
		t.Errorf("%d token ids for %d blocks of 4", n, len(ev[1].([]any)))
	}
	lastSeq := binary.BigEndian.Uint64(first.Frames[1])

	// Fill the 8-block cache with other prompts: evictions follow.
	kinds := map[string]int{}
	for i := 0; kinds["BlockRemoved"] == 0; i++ {
		if i > 50 {
			t.Fatal("no BlockRemoved after 50 prompts")
		}
		post(t, f.Addrs()[0], "/v1/completions", `{"model":"m","prompt":"x`+strings.Repeat(" y", i+3)+` z w v","max_tokens":1,"ignore_eos":true}`)
		drain(t, got, &lastSeq, kinds)
	}
	if resp, _ := post(t, f.Addrs()[0], "/reset_prefix_cache", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("reset: %d", resp.StatusCode)
	}
	for kinds["AllBlocksCleared"] == 0 {
		select {
		case m := <-got:
			record(t, m, &lastSeq, kinds)
		case <-ctx.Done():
			t.Fatal("no AllBlocksCleared")
		}
	}
	if h := srv.Engine().CachedBlockHashes(); len(h) != 0 {
		t.Errorf("cache after reset holds %d blocks", len(h))
	}
}

func drain(t *testing.T, got chan zmq4.Msg, lastSeq *uint64, kinds map[string]int) {
	for {
		select {
		case m := <-got:
			record(t, m, lastSeq, kinds)
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

func record(t *testing.T, m zmq4.Msg, lastSeq *uint64, kinds map[string]int) {
	t.Helper()
	seq := binary.BigEndian.Uint64(m.Frames[1])
	if seq != *lastSeq+1 {
		t.Errorf("sequence %d after %d", seq, *lastSeq)
	}
	*lastSeq = seq
	var batch []any
	if err := msgpack.Unmarshal(m.Frames[2], &batch); err != nil {
		t.Fatal(err)
	}
	for _, ev := range batch[1].([]any) {
		kinds[ev.([]any)[0].(string)]++
	}
}
