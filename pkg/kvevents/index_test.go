package kvevents

import (
	"runtime"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
)

func stored(hashes ...uint64) Event {
	return Event{Kind: KindBlockStored, BlockHashes: hashes, BlockSize: 16}
}

func removed(hashes ...uint64) Event {
	return Event{Kind: KindBlockRemoved, BlockHashes: hashes}
}

func TestIndex_MatchesLeadingBlocksAndFollowsRemovals(t *testing.T) {
	ix := NewIndex(0)
	ix.Apply("a", []Event{stored(1, 2, 3), stored(4)})
	ix.Apply("b", []Event{stored(1)})
	prompt := []uint64{1, 2, 3, 4, 5}
	if n := ix.Match("a", prompt, 0); n != 4 {
		t.Errorf("a matches %d, want 4", n)
	}
	if n := ix.Match("b", prompt, 0); n != 1 {
		t.Errorf("b matches %d, want 1", n)
	}
	ix.Apply("a", []Event{removed(2)})
	if n := ix.Match("a", prompt, 0); n != 1 {
		t.Errorf("after removing block 2, a matches %d, want 1 (a hole ends the prefix)", n)
	}
	ix.Apply("a", []Event{{Kind: KindAllBlocksCleared}})
	if n := ix.Match("a", prompt, 0); n != 0 || ix.Stats("a").Blocks != 0 {
		t.Errorf("after AllBlocksCleared: match %d, %+v", n, ix.Stats("a"))
	}
	if n := ix.Match("unknown", prompt, 0); n != 0 {
		t.Errorf("unknown endpoint matches %d", n)
	}
}

func TestIndex_LoRABlocksNeverMatchOtherAdapters(t *testing.T) {
	ix := NewIndex(0)
	sql := stored(1, 2)
	sql.LoRAName = "sql"
	byID := stored(1, 2)
	byID.LoRAID, byID.HasLoRAID = 7, true
	ix.Apply("a", []Event{sql, byID})
	if n := ix.Match("a", []uint64{1, 2}, 0); n != 0 {
		t.Errorf("base model matched %d adapter blocks", n)
	}
	if n := ix.Match("a", []uint64{1, 2}, LoRAKey("sql", 0, false)); n != 2 {
		t.Errorf("sql matched %d, want 2", n)
	}
	if n := ix.Match("a", []uint64{1, 2}, LoRAKey("chat", 0, false)); n != 0 {
		t.Errorf("another adapter matched %d", n)
	}
	// BlockRemoved names no adapter: it removes the hash under all of them.
	ix.Apply("a", []Event{removed(1)})
	if n := ix.Match("a", []uint64{1, 2}, LoRAKey("sql", 0, false)); n != 0 {
		t.Errorf("after removal sql matched %d", n)
	}
	if st := ix.Stats("a"); st.Blocks != 2 {
		t.Errorf("%d blocks left, want 2 (block 2 under both adapter keys)", st.Blocks)
	}
}

func TestIndex_GapMakesEntriesUncertainUntilConfirmed(t *testing.T) {
	ix := NewIndex(0)
	ix.Apply("a", []Event{stored(1, 2, 3)})
	ix.MarkGap("a")
	if n := ix.Match("a", []uint64{1, 2, 3}, 0); n != 0 {
		t.Errorf("uncertain entries matched %d", n)
	}
	if st := ix.Stats("a"); st.Uncertain != 3 {
		t.Errorf("stats %+v, want 3 uncertain", st)
	}
	// The engine stores 1 again (it had been evicted in the gap) and
	// removes 3: 1 is certain, 2 still uncertain, so the match is 1.
	ix.Apply("a", []Event{stored(1), removed(3)})
	if n := ix.Match("a", []uint64{1, 2, 3}, 0); n != 1 {
		t.Errorf("matched %d, want 1", n)
	}
	if st := ix.Stats("a"); st.Blocks != 2 || st.Uncertain != 1 {
		t.Errorf("stats %+v, want 2 blocks, 1 uncertain", st)
	}
	ix.Clear("a")
	if st := ix.Stats("a"); st != (EndpointStats{}) {
		t.Errorf("after Clear %+v", st)
	}
}

func TestIndex_CapEvictsOldestStored(t *testing.T) {
	ix := NewIndex(3)
	ix.Apply("a", []Event{stored(1, 2, 3), stored(4)})
	if st := ix.Stats("a"); st.Blocks != 3 {
		t.Fatalf("%d blocks, want the cap 3", st.Blocks)
	}
	if n := ix.Match("a", []uint64{2, 3, 4}, 0); n != 3 {
		t.Errorf("newest three matched %d", n)
	}
	if n := ix.Match("a", []uint64{1}, 0); n != 0 {
		t.Errorf("oldest block still matched")
	}
}

// TestIndex_SlidingWindowGroupsGiveNoFalseHits: a hybrid model whose
// full-attention group holds a long prefix but whose sliding-window group
// no longer holds the window ending there can only hit as far as both
// agree.
func TestIndex_SlidingWindowGroupsGiveNoFalseHits(t *testing.T) {
	ix := NewIndex(0)
	full := stored(1, 2, 3, 4, 5, 6)
	swa := Event{Kind: KindBlockStored, BlockHashes: []uint64{1, 2, 3, 4}, BlockSize: 16, GroupIdx: 1, SpecKind: "sliding_window", SlidingWindow: 32}
	ix.Apply("a", []Event{full, swa})
	prompt := []uint64{1, 2, 3, 4, 5, 6}
	// Window of 2 blocks: the hit may end at block 4 (blocks 3, 4 held in
	// group 1), not at 6 (5, 6 missing from group 1).
	if n := ix.Match("a", prompt, 0); n != 4 {
		t.Errorf("matched %d, want 4", n)
	}
	// The sliding-window group evicted block 3 (outside later windows):
	// a hit ending at 4 needs 3 and 4, so only 2 (blocks 1, 2) remain.
	ix.Apply("a", []Event{{Kind: KindBlockRemoved, BlockHashes: []uint64{3}, GroupIdx: 1}})
	if n := ix.Match("a", prompt, 0); n != 2 {
		t.Errorf("matched %d, want 2", n)
	}
	// Removal in group 1 does not touch group 0.
	if st := ix.Stats("a"); st.Blocks != 9 {
		t.Errorf("%d entries, want 9", st.Blocks)
	}
}

func TestIndex_ForgetDropsTheEndpoint(t *testing.T) {
	ix := NewIndex(0)
	ix.Apply("a", []Event{stored(1)})
	ix.Apply("b", []Event{stored(1)})
	ix.Forget("a")
	if got := ix.Endpoints(); len(got) != 1 || got[0] != "b" {
		t.Errorf("endpoints %v", got)
	}
	if n := ix.Match("a", []uint64{1}, 0); n != 0 {
		t.Errorf("forgotten endpoint matched %d", n)
	}
}

// BenchmarkIndex_StoreMillionBlocks stores one million blocks on one
// endpoint (in events of 16 blocks, like prefills of 256 tokens) and
// reports the heap the index holds per million blocks: the figure doc.go
// documents.
func BenchmarkIndex_StoreMillionBlocks(b *testing.B) {
	b.ReportAllocs()
	const n = 1 << 20
	hashes := make([]uint64, n)
	for i := range hashes {
		hashes[i] = uint64(i)*0x9e3779b97f4a7c15 + 1
	}
	var perMillion float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ix := NewIndex(n)
		for i := 0; i < n; i += 16 {
			ix.Apply("a", []Event{stored(hashes[i : i+16]...)})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perMillion = float64(after.HeapAlloc-before.HeapAlloc) / n * 1e6
		runtime.KeepAlive(ix)
	}
	b.ReportMetric(perMillion/(1<<20), "MiB/1M-blocks")
}

// BenchmarkIndex_Match matches a 128-block prompt fully cached on an
// endpoint holding 100k blocks.
func BenchmarkIndex_Match(b *testing.B) {
	ix := NewIndex(0)
	prompt := make([]uint64, 128)
	for i := range prompt {
		prompt[i] = uint64(i + 1)
	}
	ix.Apply("a", []Event{stored(prompt...)})
	for i := range 100_000 {
		ix.Apply("a", []Event{stored(uint64(i) + 1000)})
	}
	b.ReportAllocs()
	for b.Loop() {
		if ix.Match("a", prompt, 0) != 128 {
			b.Fatal("no match")
		}
	}
}

func TestDefaultAddress_LabelsThenDefaultPort(t *testing.T) {
	cases := []struct {
		addr   string
		labels map[string]string
		want   string
	}{
		{"10.0.0.7:8000", nil, "tcp://10.0.0.7:5557"},
		{"10.0.0.7:8000", map[string]string{datastore.KVEventsPortLabel: "6000"}, "tcp://10.0.0.7:6000"},
		{"[fd00::1]:8000", nil, "tcp://[fd00::1]:5557"},
		{"10.0.0.7:8000", map[string]string{datastore.KVEventsEndpointLabel: "tcp://kv:1", datastore.KVEventsPortLabel: "6000"}, "tcp://kv:1"},
	}
	for _, c := range cases {
		got, ok := DefaultAddress(datastore.NewEndpoint("e", c.addr, "p", datastore.EngineVLLM, c.labels))
		if !ok || got != c.want {
			t.Errorf("%s %v: %q, want %q", c.addr, c.labels, got, c.want)
		}
	}
}
