package kvevents

import (
	"testing"

	"github.com/cespare/xxhash/v2"
)

// engineEvent is a BlockStored as an engine with its own hash function
// (seeded by seed) would publish it for blocks first..first+n of tokens.
func engineEvent(seed uint64, tokens []uint32, bs, first, n int) Event {
	ev := Event{Kind: KindBlockStored, BlockSize: bs, TokenIDs: tokens[first*bs : (first+n)*bs]}
	h := seed
	for b := 0; b < first+n; b++ {
		var buf []byte
		for _, t := range tokens[b*bs : (b+1)*bs] {
			buf = append(buf, byte(t), byte(t>>8), byte(t>>16), byte(t>>24))
		}
		next := xxhash.Sum64(append(buf, byte(h), byte(h>>8), byte(h>>16), byte(h>>24), byte(h>>32), byte(h>>40), byte(h>>48), byte(h>>56)))
		if b == first-1 {
			ev.ParentHash, ev.HasParent = next, true
		}
		if b >= first {
			ev.BlockHashes = append(ev.BlockHashes, next)
		}
		h = next
	}
	return ev
}

func TestIndex_KeysBlocksByTokensNotByEngineHashes(t *testing.T) {
	const bs = 4
	tokens := make([]uint32, 10*bs)
	for i := range tokens {
		tokens[i] = uint32(i*7 + 3)
	}
	prompt := PromptHashes(nil, tokens, bs, 100)
	if len(prompt) != 10 {
		t.Fatalf("%d prompt blocks, want 10", len(prompt))
	}
	ix := NewIndex(0)
	// Two engines hashing with different seeds store the same tokens, one
	// in two events (the second chained by its parent's engine hash).
	ix.Apply("a", []Event{engineEvent(1, tokens, bs, 0, 6), engineEvent(1, tokens, bs, 6, 2)})
	ix.Apply("b", []Event{engineEvent(99, tokens, bs, 0, 3)})
	if got := ix.Match("a", prompt, 0); got != 8 {
		t.Errorf("a matches %d blocks, want 8", got)
	}
	if got := ix.Match("b", prompt, 0); got != 3 {
		t.Errorf("b matches %d blocks, want 3", got)
	}
	// BlockRemoved names the engine's hash: block 2 of a leaves.
	gone := engineEvent(1, tokens, bs, 2, 1).BlockHashes
	ix.Apply("a", []Event{removed(gone...)})
	if got := ix.Match("a", prompt, 0); got != 2 {
		t.Errorf("after removing block 2, a matches %d, want 2", got)
	}
	if n := len(ix.Hashes("a")); n != 7 {
		t.Errorf("a tracks %d engine hashes, want 7", n)
	}
	// A block whose parent the index never saw cannot be chained: not
	// tracked (a miss, never a false hit), and its children neither.
	ix.Apply("c", []Event{engineEvent(5, tokens, bs, 4, 2), engineEvent(5, tokens, bs, 6, 1)})
	if st := ix.Stats("c"); st.Blocks != 0 {
		t.Errorf("unchainable blocks tracked: %+v", st)
	}
	// Different tokens in the middle: the match stops there.
	other := append([]uint32(nil), tokens...)
	other[5*bs] = 1
	if got := ix.Match("a", PromptHashes(nil, other, bs, 100), 0); got != 2 {
		t.Errorf("a matches %d of a prompt diverging at block 5 (block 2 evicted), want 2", got)
	}
	// The prompt's partial last block has no hash; maxBlocks bounds.
	if n := len(PromptHashes(nil, tokens[:4*bs+3], bs, 100)); n != 4 {
		t.Errorf("%d hashes for 4 blocks and 3 tokens", n)
	}
	if n := len(PromptHashes(nil, tokens, bs, 5)); n != 5 {
		t.Errorf("%d hashes with maxBlocks 5", n)
	}
}

func TestIndex_TokenEventsWithWrongLengthsFallBackToEngineHashes(t *testing.T) {
	ix := NewIndex(0)
	ev := Event{Kind: KindBlockStored, BlockHashes: []uint64{11, 12}, TokenIDs: []uint32{1, 2, 3}, BlockSize: 4}
	ix.Apply("a", []Event{ev})
	if got := ix.Match("a", []uint64{11, 12}, 0); got != 2 {
		t.Errorf("engine-hash keyed blocks match %d, want 2", got)
	}
	ix.Apply("a", []Event{removed(11)})
	if got := ix.Match("a", []uint64{11, 12}, 0); got != 0 {
		t.Errorf("after removal match %d", got)
	}
}
