package prefix

import (
	"sync"

	"github.com/igw-dev/igw/pkg/scheduling"
)

// Index layout (why it is not a map of LRU caches):
//
// A tracked block is one (block hash, endpoint) pair. Every pair is one
// 24-byte entry, stored in fixed-size pages addressed by int32, so entries
// hold no pointers (the GC never scans them) and growth never copies them.
// Each entry is linked twice:
//
//   - into its endpoint's LRU list (prev/next), which gives per-endpoint
//     capacity and eviction in O(1);
//   - into its hash's chain (chain), the list of endpoints holding that
//     block.
//
// One open-addressed table (linear probing, backward-shift deletion) maps a
// block hash to the head of its chain, 12 bytes per slot at a load factor
// of 3/8..3/4. Scoring therefore costs one table lookup per prompt block,
// not one per block per endpoint: walking block i's chain advances the
// match run of every endpoint that matched blocks 0..i-1, and the walk
// stops at the first block no endpoint continues. Memory is 24 bytes per
// tracked block plus 16–32 bytes per distinct hash: at most 56 bytes per
// tracked block.

const (
	none         int32 = -1
	pageBits           = 12
	pageSize           = 1 << pageBits
	pageMask           = pageSize - 1
	minTableSize       = 1 << 10
)

type entry struct {
	hash  uint64
	slot  int32 // endpoint slot
	prev  int32 // LRU neighbour, more recently recorded
	next  int32 // LRU neighbour, less recently recorded; free-list link
	chain int32 // next entry of the same hash
}

type endpointLRU struct {
	address    string
	head, tail int32 // most and least recently recorded entries
	size       int32
}

// Index is the approximate prefix-cache index: for every endpoint, an LRU
// of the block hashes most recently sent there. It is safe for concurrent
// use: scoring takes a read lock, recording and forgetting a write lock.
type Index struct {
	mu       sync.RWMutex
	capacity int32

	keys  []uint64 // 0 = empty slot (block hashes are never 0)
	heads []int32  // chain head per key
	used  int

	pages    [][]entry
	free     int32 // free-list head
	nEntries int32 // entries handed out from pages (high-water mark)
	live     int   // tracked blocks

	slots     []endpointLRU
	slotOf    map[string]int32
	freeSlots []int32
}

// NewIndex returns an empty index that keeps at most capacityPerEndpoint
// block hashes per endpoint.
func NewIndex(capacityPerEndpoint int) *Index {
	ix := &Index{capacity: int32(capacityPerEndpoint), free: none, slotOf: map[string]int32{}}
	ix.resize(minTableSize)
	return ix
}

// Len is the number of tracked (block, endpoint) pairs.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.live
}

// Endpoints is the number of endpoints with tracked blocks.
func (ix *Index) Endpoints() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.slotOf)
}

func (ix *Index) ent(e int32) *entry { return &ix.pages[e>>pageBits][e&pageMask] }

// find returns the table position of h and whether it is present; when
// absent, the position is where h would be inserted.
func (ix *Index) find(h uint64) (int, bool) {
	mask := uint64(len(ix.keys) - 1)
	i := h & mask
	for {
		k := ix.keys[i]
		if k == h {
			return int(i), true
		}
		if k == 0 {
			return int(i), false
		}
		i = (i + 1) & mask
	}
}

func (ix *Index) resize(size int) {
	oldKeys, oldHeads := ix.keys, ix.heads
	ix.keys = make([]uint64, size)
	ix.heads = make([]int32, size)
	for i, k := range oldKeys {
		if k != 0 {
			pos, _ := ix.find(k)
			ix.keys[pos] = k
			ix.heads[pos] = oldHeads[i]
		}
	}
}

// deleteAt empties table position pos with backward-shift deletion, which
// keeps every remaining key reachable without tombstones.
func (ix *Index) deleteAt(pos int) {
	mask := len(ix.keys) - 1
	i, j := pos, pos
	for {
		j = (j + 1) & mask
		k := ix.keys[j]
		if k == 0 {
			break
		}
		home := int(k) & mask
		// Leave k where it is if its home lies cyclically in (i, j].
		if i <= j {
			if i < home && home <= j {
				continue
			}
		} else if i < home || home <= j {
			continue
		}
		ix.keys[i], ix.heads[i] = k, ix.heads[j]
		i = j
	}
	ix.keys[i], ix.heads[i] = 0, none
	ix.used--
}

func (ix *Index) alloc() int32 {
	if e := ix.free; e != none {
		ix.free = ix.ent(e).next
		return e
	}
	if int(ix.nEntries) == len(ix.pages)*pageSize {
		ix.pages = append(ix.pages, make([]entry, pageSize))
	}
	e := ix.nEntries
	ix.nEntries++
	return e
}

func (ix *Index) release(e int32) {
	*ix.ent(e) = entry{next: ix.free, prev: none, chain: none}
	ix.free = e
}

func (ix *Index) slotFor(address string) int32 {
	if s, ok := ix.slotOf[address]; ok {
		return s
	}
	var s int32
	if n := len(ix.freeSlots); n > 0 {
		s = ix.freeSlots[n-1]
		ix.freeSlots = ix.freeSlots[:n-1]
	} else {
		s = int32(len(ix.slots))
		ix.slots = append(ix.slots, endpointLRU{})
	}
	ix.slots[s] = endpointLRU{address: address, head: none, tail: none}
	ix.slotOf[address] = s
	return s
}

func (ix *Index) pushFront(s int32, e int32) {
	l := &ix.slots[s]
	en := ix.ent(e)
	en.prev, en.next = none, l.head
	if l.head != none {
		ix.ent(l.head).prev = e
	} else {
		l.tail = e
	}
	l.head = e
	l.size++
}

func (ix *Index) unlinkLRU(e int32) {
	en := ix.ent(e)
	l := &ix.slots[en.slot]
	if en.prev != none {
		ix.ent(en.prev).next = en.next
	} else {
		l.head = en.next
	}
	if en.next != none {
		ix.ent(en.next).prev = en.prev
	} else {
		l.tail = en.prev
	}
	l.size--
}

// unlinkChain removes e from its hash chain, and the hash from the table
// when e was its last entry.
func (ix *Index) unlinkChain(e int32) {
	en := ix.ent(e)
	pos, ok := ix.find(en.hash)
	if !ok {
		return // unreachable: every live entry's hash is in the table
	}
	if ix.heads[pos] == e {
		ix.heads[pos] = en.chain
		if en.chain == none {
			ix.deleteAt(pos)
		}
		return
	}
	for p := ix.heads[pos]; p != none; p = ix.ent(p).chain {
		if pe := ix.ent(p); pe.chain == e {
			pe.chain = en.chain
			return
		}
	}
}

// insert records h for slot s as most recent, evicting the slot's least
// recent block when over capacity.
func (ix *Index) insert(h uint64, s int32) {
	pos, found := ix.find(h)
	if found {
		for e := ix.heads[pos]; e != none; e = ix.ent(e).chain {
			if ix.ent(e).slot == s {
				if ix.slots[s].head != e {
					ix.unlinkLRU(e)
					ix.pushFront(s, e)
				}
				return
			}
		}
	} else if (ix.used+1)*4 > len(ix.keys)*3 {
		ix.resize(len(ix.keys) * 2)
		pos, _ = ix.find(h)
	}
	e := ix.alloc()
	en := ix.ent(e)
	en.hash, en.slot, en.chain = h, s, none
	if found {
		en.chain = ix.heads[pos]
	} else {
		ix.keys[pos] = h
		ix.used++
	}
	ix.heads[pos] = e
	ix.pushFront(s, e)
	ix.live++
	if ix.slots[s].size > ix.capacity {
		old := ix.slots[s].tail
		ix.unlinkLRU(old)
		ix.unlinkChain(old)
		ix.release(old)
		ix.live--
	}
}

// Record notes that the blocks hashes (a prompt's chain, first block first)
// were sent to address. The first block is recorded as the most recent, so
// under capacity pressure an endpoint forgets a prompt's tail before its
// head: the head is what other prompts share.
func (ix *Index) Record(address string, hashes []uint64) {
	if len(hashes) == 0 {
		return
	}
	ix.mu.Lock()
	s := ix.slotFor(address)
	for i := len(hashes) - 1; i >= 0; i-- {
		ix.insert(hashes[i], s)
	}
	ix.mu.Unlock()
}

// Forget drops every block tracked for address; the endpoint's slot is
// reused by the next new endpoint.
func (ix *Index) Forget(address string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	s, ok := ix.slotOf[address]
	if !ok {
		return
	}
	for e := ix.slots[s].head; e != none; {
		next := ix.ent(e).next
		ix.unlinkChain(e)
		ix.release(e)
		ix.live--
		e = next
	}
	ix.slots[s] = endpointLRU{head: none, tail: none}
	delete(ix.slotOf, address)
	ix.freeSlots = append(ix.freeSlots, s)
	if len(ix.keys) > minTableSize && ix.used*8 < len(ix.keys) {
		size := minTableSize
		for size*3 < ix.used*8 { // keep the load <= 3/8 after shrinking
			size *= 2
		}
		ix.resize(size)
	}
}

// score writes, for each candidate, the number of leading blocks of hashes
// its endpoint holds, divided by len(hashes). runs is scratch (one counter
// per endpoint slot), returned for reuse.
func (ix *Index) score(hashes []uint64, cands []scheduling.Candidate, scores []float64, runs []int32) []int32 {
	for i := range scores {
		scores[i] = 0
	}
	if len(hashes) == 0 {
		return runs
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	pos, ok := ix.find(hashes[0])
	if !ok {
		return runs // no endpoint has even the first block
	}
	n := len(ix.slots)
	if cap(runs) < n {
		runs = make([]int32, n, n+n/4+8)
	}
	runs = runs[:n]
	clear(runs)
	for b := 0; b < len(hashes); b++ {
		if b > 0 {
			if pos, ok = ix.find(hashes[b]); !ok {
				break
			}
		}
		alive := 0
		for e := ix.heads[pos]; e != none; {
			en := ix.ent(e)
			if runs[en.slot] == int32(b) {
				runs[en.slot] = int32(b + 1)
				alive++
			}
			e = en.chain
		}
		if alive == 0 {
			break
		}
	}
	total := float64(len(hashes))
	for i := range cands {
		if s, ok := ix.slotOf[cands[i].Endpoint.Address]; ok {
			scores[i] = float64(runs[s]) / total
		}
	}
	return runs
}
