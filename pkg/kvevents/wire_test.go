package kvevents

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// pack encodes v as msgpack the way Python's msgspec encodes vLLM's
// array-like structs: slices become arrays, nil becomes nil.
func pack(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestDecoder_GoldenVLLMBatch pins the decoder to bytes written by hand
// from REFERENCE §10's layout: a full twelve-field BlockStored (bytes
// hashes as recent vLLM sends them), a BlockRemoved with group_idx, and
// AllBlocksCleared, in a batch with a data-parallel rank.
func TestDecoder_GoldenVLLMBatch(t *testing.T) {
	// [1.5, [ev1, ev2, ev3], 2]
	golden := "93" + "cb3ff8000000000000" + "93" +
		// ["BlockStored", [bin(0x..01 02)], bin(..ff), [7, 8], 2, 3, "GPU", "sql", nil, 1, "sliding_window", 4096]
		"9c" + "ab426c6f636b53746f726564" +
		"91" + "c40a" + "00000000000000000102" +
		"c403" + "0000ff" +
		"92" + "07" + "08" +
		"02" + "03" + "a3475055" + "a373716c" + "c0" + "01" +
		"ae736c6964696e675f77696e646f77" + "cd1000" +
		// ["BlockRemoved", [-1], "GPU", 1]
		"94" + "ac426c6f636b52656d6f766564" + "91" + "ff" + "a3475055" + "01" +
		// ["AllBlocksCleared"]
		"91" + "b0416c6c426c6f636b73436c6561726564" +
		"02"
	payload, err := hex.DecodeString(golden)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewDecoder(Limits{}).Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	if b.Timestamp != 1.5 || !b.HasRank || b.DataParallelRank != 2 || len(b.Events) != 3 {
		t.Fatalf("batch %+v", b)
	}
	st := b.Events[0]
	want := Event{Kind: KindBlockStored, BlockHashes: []uint64{0x0102}, ParentHash: 0xff, HasParent: true,
		TokenIDs: []uint32{7, 8}, BlockSize: 2, LoRAID: 3, HasLoRAID: true, Medium: "GPU", LoRAName: "sql",
		GroupIdx: 1, SpecKind: "sliding_window", SlidingWindow: 4096}
	if !equalEvent(st, want) {
		t.Errorf("BlockStored\n got %+v\nwant %+v", st, want)
	}
	rm := b.Events[1]
	if rm.Kind != KindBlockRemoved || len(rm.BlockHashes) != 1 || rm.BlockHashes[0] != math.MaxUint64 || rm.GroupIdx != 1 || rm.Medium != "GPU" {
		t.Errorf("BlockRemoved %+v", rm)
	}
	if b.Events[2].Kind != KindAllBlocksCleared {
		t.Errorf("third event %+v", b.Events[2])
	}
}

func equalEvent(a, b Event) bool {
	return a.Kind == b.Kind && slicesEqual(a.BlockHashes, b.BlockHashes) && a.ParentHash == b.ParentHash &&
		a.HasParent == b.HasParent && slicesEqual(a.TokenIDs, b.TokenIDs) && a.BlockSize == b.BlockSize &&
		a.LoRAID == b.LoRAID && a.HasLoRAID == b.HasLoRAID && a.Medium == b.Medium && a.LoRAName == b.LoRAName &&
		a.GroupIdx == b.GroupIdx && a.SpecKind == b.SpecKind && a.SlidingWindow == b.SlidingWindow
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecoder_ByPosition(t *testing.T) {
	cases := []struct {
		name  string
		batch any
		check func(t *testing.T, b *Batch)
	}{
		{"old vLLM: four BlockStored fields, no rank",
			[]any{1.0, []any{[]any{"BlockStored", []any{uint64(1), uint64(2)}, nil, []any{1, 2, 3, 4}, 2}}},
			func(t *testing.T, b *Batch) {
				e := b.Events[0]
				if b.HasRank || len(e.BlockHashes) != 2 || e.HasParent || e.BlockSize != 2 || e.HasLoRAID || e.LoRAName != "" {
					t.Errorf("%+v", e)
				}
			}},
		{"newer engine: extra trailing fields everywhere",
			[]any{1, []any{
				[]any{"BlockStored", []any{5}, 4, []any{9}, 1, nil, "GPU", nil, nil, 0, "full_attention", nil, "future", map[string]any{"x": []any{1}}},
				[]any{"BlockRemoved", []any{5}, "GPU", 0, "future"},
				[]any{"AllBlocksCleared", "future"},
			}, 0, "future"},
			func(t *testing.T, b *Batch) {
				if len(b.Events) != 3 || b.Events[0].ParentHash != 4 || b.Events[1].BlockHashes[0] != 5 {
					t.Errorf("%+v", b.Events)
				}
			}},
		{"int64 hashes keep their bits",
			[]any{1.0, []any{[]any{"BlockRemoved", []any{int64(-2)}}}},
			func(t *testing.T, b *Batch) {
				if h := b.Events[0].BlockHashes[0]; h != math.MaxUint64-1 {
					t.Errorf("hash %x", h)
				}
			}},
		{"short bytes hashes are padded, long ones keep the last 8",
			[]any{1.0, []any{[]any{"BlockRemoved", []any{[]byte{1}, bytes.Repeat([]byte{0xab}, 32)}}}},
			func(t *testing.T, b *Batch) {
				if h := b.Events[0].BlockHashes; h[0] != 1 || h[1] != 0xabababababababab {
					t.Errorf("hashes %x", h)
				}
			}},
		{"unknown events are skipped",
			[]any{1.0, []any{[]any{"BlockMoved", []any{1}, "CPU"}, []any{"AllBlocksCleared"}}},
			func(t *testing.T, b *Batch) {
				if len(b.Events) != 2 || b.Events[0].Kind != KindUnknown || b.Events[1].Kind != KindAllBlocksCleared {
					t.Errorf("%+v", b.Events)
				}
			}},
	}
	d := NewDecoder(Limits{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := d.Decode(pack(t, c.batch))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, b)
		})
	}
}

func TestDecoder_RejectsMalformed(t *testing.T) {
	cases := map[string][]byte{
		"empty":              {},
		"not an array":       pack(t, "BlockStored"),
		"one field":          pack(t, []any{1.0}),
		"string timestamp":   pack(t, []any{"now", []any{}}),
		"events not array":   pack(t, []any{1.0, "x"}),
		"event not array":    pack(t, []any{1.0, []any{5}}),
		"tag not string":     pack(t, []any{1.0, []any{[]any{5}}}),
		"no hashes":          pack(t, []any{1.0, []any{[]any{"BlockStored"}}}),
		"nil hash":           pack(t, []any{1.0, []any{[]any{"BlockRemoved", []any{nil}}}}),
		"float hash":         pack(t, []any{1.0, []any{[]any{"BlockRemoved", []any{1.5}}}}),
		"negative token":     pack(t, []any{1.0, []any{[]any{"BlockStored", []any{1}, nil, []any{-1}, 1}}}),
		"string block size":  pack(t, []any{1.0, []any{[]any{"BlockStored", []any{1}, nil, []any{1}, "16"}}}),
		"negative group":     pack(t, []any{1.0, []any{[]any{"BlockRemoved", []any{1}, nil, -1}}}),
		"truncated":          pack(t, []any{1.0, []any{[]any{"BlockRemoved", []any{1, 2, 3}}}})[:12],
		"huge array claimed": {0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"huge hashes":        append(pack(t, []any{1.0})[:1:1], 0x92, 0x01, 0x91, 0x92, 0xac, 'B', 'l', 'o', 'c', 'k', 'R', 'e', 'm', 'o', 'v', 'e', 'd', 0xdd, 0x7f, 0xff, 0xff, 0xff),
		"deep nesting":       append([]byte{0x93, 0x01, 0x90}, bytes.Repeat([]byte{0x91}, 10000)...),
	}
	d := NewDecoder(Limits{})
	for name, payload := range cases {
		if _, err := d.Decode(payload); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

// TestDecoder_ClaimedLengthsDoNotAllocate: a payload of a few bytes that
// claims four billion elements costs a few allocations, not gigabytes.
func TestDecoder_ClaimedLengthsDoNotAllocate(t *testing.T) {
	d := NewDecoder(Limits{})
	payload := []byte{0x92, 0x01, 0x91, 0x92, 0xac, 'B', 'l', 'o', 'c', 'k', 'R', 'e', 'm', 'o', 'v', 'e', 'd', 0xdd, 0x7f, 0xff, 0xff, 0xff}
	_, _ = d.Decode(payload) // warm the decoder's buffers
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		_, _ = d.Decode(payload)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 4096 {
		t.Errorf("%d bytes allocated per malformed decode", per)
	}
}
