package kvevents

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// FuzzDecoder feeds the decoder arbitrary payloads (`go test -fuzz
// FuzzDecoder ./pkg/kvevents` to explore; the seeds below run in every
// `go test`): it must never panic, what it returns must be bounded by the
// payload's size (a claimed length never turns into an allocation), and
// applying the result to a capped index must respect the cap.
func FuzzDecoder(f *testing.F) {
	seeds := []any{
		[]any{1.0, []any{[]any{"BlockStored", []any{1, 2}, nil, []any{1, 2, 3, 4}, 2, nil, "GPU"}}},
		[]any{1.0, []any{[]any{"BlockStored", []any{[]byte("0123456789abcdef")}, 7, []any{1}, 1, 3, "GPU", "lora", nil, 1, "sliding_window", 32}}},
		[]any{1.0, []any{[]any{"BlockRemoved", []any{int64(-5)}, "GPU", 2}}, 0},
		[]any{1.0, []any{[]any{"AllBlocksCleared"}, []any{"Unknown", 1, 2}}},
		[]any{"x", []any{}},
		[]any{1.0, []any{[]any{"BlockStored", []any{1}, nil, []any{-1}, "16"}}},
	}
	for _, s := range seeds {
		f.Add(pack(f, s))
	}
	golden, _ := hex.DecodeString("9292cb3ff000000000000091ac426c6f636b52656d6f766564dd7fffffff")
	f.Add(golden)
	f.Add(append([]byte{0x93, 0x01, 0x90}, bytes.Repeat([]byte{0x91}, 200)...))
	f.Add([]byte{0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x92, 0x01, 0x91, 0x92, 0xab, 'B', 'l', 'o', 'c', 'k', 'S', 't', 'o', 'r', 'e', 'd', 0xc6, 0x7f, 0xff, 0xff, 0xff})

	d := NewDecoder(Limits{})
	ix := NewIndex(64)
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := d.Decode(payload)
		if err != nil {
			return
		}
		blocks, tokens := 0, 0
		for _, ev := range b.Events {
			blocks += len(ev.BlockHashes)
			tokens += len(ev.TokenIDs)
		}
		if len(b.Events) > len(payload) || blocks > len(payload) || tokens > len(payload) {
			t.Fatalf("%d bytes decoded to %d events, %d hashes, %d tokens", len(payload), len(b.Events), blocks, tokens)
		}
		ix.Apply("ep", b.Events)
		if st := ix.Stats("ep"); st.Blocks > 64 || st.Uncertain > st.Blocks {
			t.Fatalf("index stats %+v over its cap of 64", st)
		}
		for _, ev := range b.Events {
			if n := ix.Match("ep", ev.BlockHashes, LoRAKey(ev.LoRAName, ev.LoRAID, ev.HasLoRAID)); n > len(ev.BlockHashes) {
				t.Fatalf("matched %d of %d blocks", n, len(ev.BlockHashes))
			}
		}
	})
}
