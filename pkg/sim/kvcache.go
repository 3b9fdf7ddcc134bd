package sim

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// kvCache is the paged KV cache of one engine with automatic prefix
// caching, after vLLM's block manager:
//
//   - Memory is a fixed number of blocks of blockSize tokens.
//   - A full block is identified by a hash chained over the token ids of the
//     block and the hash of the block before it (seeded by the LoRA adapter),
//     so equal hashes mean equal prefixes.
//   - A block whose reference count drops to zero keeps its contents and its
//     hash and joins the free queue; a later request with the same prefix
//     takes it back (a prefix-cache hit). New allocations take the block at
//     the head of the free queue, evicting its cached contents, so cached
//     blocks are evicted in least-recently-freed order.
//
// It is not safe for concurrent use; the engine's lock guards it.
type kvCache struct {
	blockSize int
	blocks    []kvBlock
	// free is an intrusive doubly linked list over blocks (indices), head =
	// next to evict.
	freeHead, freeTail int32
	numFree            int
	// cached maps a full block's hash to the block holding it.
	cached map[uint64]int32
	// record turns on events: what entered and left the prefix cache, in
	// order, until the engine takes them (takeEvents).
	record bool
	events []kvEvent
}

// kvEventKind is the tag of a KV-cache event (vLLM's event class names).
type kvEventKind uint8

const (
	kvBlockStored kvEventKind = iota
	kvBlockRemoved
	kvAllBlocksCleared
)

// kvEvent is one change to the prefix cache, as vLLM reports it. For
// stored blocks, tokens are the blocks' token ids (len(hashes)·blockSize of
// them), parent the hash of the block before the first (hasParent false for
// a sequence's first block) and adapter the LoRA adapter ("" for none).
type kvEvent struct {
	kind      kvEventKind
	hashes    []uint64
	parent    uint64
	hasParent bool
	tokens    []uint32
	adapter   string
}

type kvBlock struct {
	hash       uint64
	hashed     bool
	ref        int32
	prev, next int32
	inFree     bool
}

const noBlock = -1

func newKVCache(numBlocks, blockSize int) *kvCache {
	c := &kvCache{
		blockSize: blockSize,
		blocks:    make([]kvBlock, numBlocks),
		freeHead:  noBlock,
		freeTail:  noBlock,
		cached:    make(map[uint64]int32, numBlocks),
	}
	for i := range c.blocks {
		c.pushFree(int32(i))
	}
	return c
}

// usage is the fraction of blocks referenced by live sequences, as vLLM
// reports it (cached but unreferenced blocks count as free).
func (c *kvCache) usage() float64 {
	return float64(len(c.blocks)-c.numFree) / float64(len(c.blocks))
}

func (c *kvCache) pushFree(b int32) {
	blk := &c.blocks[b]
	blk.prev, blk.next, blk.inFree = c.freeTail, noBlock, true
	if c.freeTail != noBlock {
		c.blocks[c.freeTail].next = b
	} else {
		c.freeHead = b
	}
	c.freeTail = b
	c.numFree++
}

func (c *kvCache) unlinkFree(b int32) {
	blk := &c.blocks[b]
	if blk.prev != noBlock {
		c.blocks[blk.prev].next = blk.next
	} else {
		c.freeHead = blk.next
	}
	if blk.next != noBlock {
		c.blocks[blk.next].prev = blk.prev
	} else {
		c.freeTail = blk.prev
	}
	blk.prev, blk.next, blk.inFree = noBlock, noBlock, false
	c.numFree--
}

// lookup counts the leading hashes that are cached, and how many of those
// blocks sit in the free queue (taking them back costs free capacity).
func (c *kvCache) lookup(hashes []uint64) (hits, hitsInFree int) {
	for _, h := range hashes {
		b, ok := c.cached[h]
		if !ok {
			break
		}
		hits++
		if c.blocks[b].inFree {
			hitsInFree++
		}
	}
	return hits, hitsInFree
}

// acquireCached references the blocks holding hashes (all must be cached,
// as lookup reported) and appends them to dst.
func (c *kvCache) acquireCached(dst []int32, hashes []uint64) []int32 {
	for _, h := range hashes {
		b := c.cached[h]
		if c.blocks[b].inFree {
			c.unlinkFree(b)
		}
		c.blocks[b].ref++
		dst = append(dst, b)
	}
	return dst
}

// allocate appends n fresh blocks to dst, evicting cached contents from the
// head of the free queue. The caller checks numFree first.
func (c *kvCache) allocate(dst []int32, n int) []int32 {
	for range n {
		b := c.freeHead
		c.unlinkFree(b)
		blk := &c.blocks[b]
		if blk.hashed {
			if c.cached[blk.hash] == b {
				delete(c.cached, blk.hash)
				c.noteRemoved(blk.hash)
			}
			blk.hashed = false
		}
		blk.ref = 1
		dst = append(dst, b)
	}
	return dst
}

// commit records that block b now holds the full block with hash h, so
// later requests can hit it. The first block to hold a hash keeps it; it
// reports whether h entered the cache.
func (c *kvCache) commit(b int32, h uint64) bool {
	blk := &c.blocks[b]
	if blk.hashed {
		return false
	}
	if _, dup := c.cached[h]; dup {
		return false
	}
	blk.hash, blk.hashed = h, true
	c.cached[h] = b
	return true
}

// noteRemoved records that h left the cache, joining a BlockRemoved that
// is the latest event, as vLLM batches the evictions of one allocation.
func (c *kvCache) noteRemoved(h uint64) {
	if !c.record {
		return
	}
	if n := len(c.events); n > 0 && c.events[n-1].kind == kvBlockRemoved {
		c.events[n-1].hashes = append(c.events[n-1].hashes, h)
		return
	}
	c.events = append(c.events, kvEvent{kind: kvBlockRemoved, hashes: []uint64{h}})
}

// noteStored records that a run of consecutive blocks of one sequence
// entered the cache.
func (c *kvCache) noteStored(ev kvEvent) {
	if c.record {
		ev.kind = kvBlockStored
		c.events = append(c.events, ev)
	}
}

// takeEvents hands over the events recorded so far.
func (c *kvCache) takeEvents() []kvEvent {
	ev := c.events
	c.events = nil
	return ev
}

// reset empties the prefix cache, as vLLM's reset_prefix_cache: only when
// no block is referenced by a live sequence; it reports whether it did.
func (c *kvCache) reset() bool {
	if c.numFree != len(c.blocks) {
		return false
	}
	for i := range c.blocks {
		c.blocks[i].hashed = false
	}
	clear(c.cached)
	if c.record {
		c.events = append(c.events, kvEvent{kind: kvAllBlocksCleared})
	}
	return true
}

// cachedHashes is the hashes of every block in the prefix cache, in no
// particular order: the debug view tests compare a router's index with.
func (c *kvCache) cachedHashes() []uint64 {
	out := make([]uint64, 0, len(c.cached))
	for h := range c.cached {
		out = append(out, h)
	}
	return out
}

// release drops a sequence's references, last block first, so that the
// tail of a sequence (least likely to be shared) is evicted before its
// prefix.
func (c *kvCache) release(blocks []int32) {
	for i := len(blocks) - 1; i >= 0; i-- {
		b := blocks[i]
		blk := &c.blocks[b]
		blk.ref--
		if blk.ref == 0 {
			c.pushFree(b)
		}
	}
}

// blockHash chains the hash of one full block of token ids onto parent
// the way vLLM does by default: SHA-256 over the parent hash and the
// block's token ids (kept to its first 8 bytes, the width of the events'
// hashes). It is deliberately not igw's own chain (kvevents.ChainHash): the
// index must match blocks through the token ids the events carry, whatever
// function and seed the engine hashes with.
func blockHash(parent uint64, tokens []uint32) uint64 {
	h := sha256.New()
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], parent)
	h.Write(buf[:])
	for _, t := range tokens {
		binary.LittleEndian.PutUint32(buf[:4], t)
		h.Write(buf[:4])
	}
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// adapterSeed is the hash chain's root: sequences of different LoRA
// adapters never share KV blocks.
func adapterSeed(adapter string) uint64 {
	return xxhash.Sum64String("igw-sim-kv:" + adapter)
}
