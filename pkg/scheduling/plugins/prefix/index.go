package prefix

import (
	"math/bits"
	"sync"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling"
)

// Index layout (why it is not a map of LRU caches):
//
// A tracked block is one (block hash, endpoint) pair. Every pair is one
// 24-byte entry (a 16-byte record and an 8-byte link in parallel pages),
// stored in fixed-size pages addressed by int32, so entries
// hold no pointers (the GC never scans them) and growth never copies them.
// Each entry is linked twice:
//
//   - into its endpoint's LRU list (prev/next), which gives per-endpoint
//     capacity and eviction in O(1);
//   - into its hash's chain (chain), the list of endpoints holding that
//     block.
//
// Two open-addressed tables (linear probing, backward-shift deletion,
// multiply-shift ranging so sizes need not be powers of two, grown 1.5x at
// load 3/4, so the load stays within 1/2..3/4):
//
//   - byHash maps a block hash to the head of its chain, 12 bytes per slot.
//     Scoring walks a few chains chosen by binary search over the prompt's
//     blocks (see score), never one lookup per block per endpoint.
//   - byPair maps (hash, endpoint) to its entry, 4 bytes per slot (the key
//     is read from the entry), so recording a block an endpoint already
//     holds is O(1) however many endpoints share it (a system prompt sent
//     everywhere).
//
// Memory: 24 bytes per tracked block, plus at most 24 bytes per distinct
// hash and 8 bytes per tracked block of table space: at most 56 bytes per
// tracked block. Freed entries are reused, not returned to the heap; the
// tables shrink when Forget leaves them mostly empty.

const (
	none         int32 = -1
	pageBits           = 12
	pageSize           = 1 << pageBits
	pageMask           = pageSize - 1
	minTableSize       = 1 << 10
)

// An entry is split in two parallel page sets: the link, all that scoring
// reads, is packed densely (8 bytes) so walking chains stays in cache; the
// rest (16 bytes) is only touched when recording.
type entry struct {
	hash uint64
	prev int32 // LRU neighbour, more recently recorded
	next int32 // LRU neighbour, less recently recorded; free-list link
}

type link struct {
	slot  int32 // endpoint slot
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

	keys  []uint64 // byHash keys; 0 = empty slot (block hashes are never 0)
	heads []int32  // byHash values: chain head per key
	used  int      // distinct hashes

	pairs []int32 // byPair: entry index, none = empty

	pages    [][]entry
	links    [][]link
	free     int32 // free-list head
	nEntries int32 // entries handed out from pages (high-water mark)
	live     int   // tracked blocks

	slots     []endpointLRU
	slotOf    map[string]int32
	freeSlots []int32
	slotGen   uint64 // slots given out, for slotRef's kept absences
}

// NewIndex returns an empty index that keeps at most capacityPerEndpoint
// block hashes per endpoint.
func NewIndex(capacityPerEndpoint int) *Index {
	ix := &Index{capacity: int32(capacityPerEndpoint), free: none, slotOf: map[string]int32{}}
	ix.resizeHashes(minTableSize)
	ix.resizePairs(minTableSize)
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
func (ix *Index) lnk(e int32) *link  { return &ix.links[e>>pageBits][e&pageMask] }

// home maps a uniformly distributed key to [0, n) (multiply-shift), so
// table sizes can grow by 1.5x instead of doubling.
func home(k uint64, n int) int {
	hi, _ := bits.Mul64(k, uint64(n))
	return int(hi)
}

// between reports whether h lies cyclically in (i, j].
func between(i, h, j int) bool {
	if i <= j {
		return i < h && h <= j
	}
	return i < h || h <= j
}

// grownSize is the next table size when n slots hold more than 3/4 used.
func grownSize(n int) int { return n + n/2 }

// shrunkSize is the table size for used keys at load 1/2.
func shrunkSize(used int) int { return max(minTableSize, used*2) }

// pairKey spreads (hash, slot) over the pair table.
func pairKey(h uint64, slot int32) uint64 {
	return (h ^ uint64(slot+1)*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
}

// findHash returns the byHash position of h and whether it is present;
// when absent, the position is where h would be inserted.
func (ix *Index) findHash(h uint64) (int, bool) {
	n := len(ix.keys)
	i := home(h, n)
	for {
		k := ix.keys[i]
		if k == h {
			return i, true
		}
		if k == 0 {
			return i, false
		}
		if i++; i == n {
			i = 0
		}
	}
}

func (ix *Index) resizeHashes(size int) {
	oldKeys, oldHeads := ix.keys, ix.heads
	ix.keys = make([]uint64, size)
	ix.heads = make([]int32, size)
	for i, k := range oldKeys {
		if k != 0 {
			pos, _ := ix.findHash(k)
			ix.keys[pos] = k
			ix.heads[pos] = oldHeads[i]
		}
	}
}

// deleteHashAt empties byHash position pos with backward-shift deletion,
// which keeps every remaining key reachable without tombstones.
func (ix *Index) deleteHashAt(pos int) {
	n := len(ix.keys)
	i, j := pos, pos
	for {
		if j++; j == n {
			j = 0
		}
		k := ix.keys[j]
		if k == 0 {
			break
		}
		if between(i, home(k, n), j) {
			continue
		}
		ix.keys[i], ix.heads[i] = k, ix.heads[j]
		i = j
	}
	ix.keys[i], ix.heads[i] = 0, none
	ix.used--
}

// findPair returns the byPair position of (h, slot) and its entry, or the
// insert position and none.
func (ix *Index) findPair(h uint64, slot int32) (int, int32) {
	n := len(ix.pairs)
	i := home(pairKey(h, slot), n)
	for {
		e := ix.pairs[i]
		if e == none {
			return i, none
		}
		if ix.ent(e).hash == h && ix.lnk(e).slot == slot {
			return i, e
		}
		if i++; i == n {
			i = 0
		}
	}
}

func (ix *Index) resizePairs(size int) {
	old := ix.pairs
	ix.pairs = make([]int32, size)
	for i := range ix.pairs {
		ix.pairs[i] = none
	}
	for _, e := range old {
		if e != none {
			pos, _ := ix.findPair(ix.ent(e).hash, ix.lnk(e).slot)
			ix.pairs[pos] = e
		}
	}
}

// deletePair removes entry e from byPair (backward-shift deletion).
func (ix *Index) deletePair(e int32) {
	pos, found := ix.findPair(ix.ent(e).hash, ix.lnk(e).slot)
	if found != e {
		return // unreachable: every live entry is in byPair
	}
	n := len(ix.pairs)
	i, j := pos, pos
	for {
		if j++; j == n {
			j = 0
		}
		f := ix.pairs[j]
		if f == none {
			break
		}
		if between(i, home(pairKey(ix.ent(f).hash, ix.lnk(f).slot), n), j) {
			continue
		}
		ix.pairs[i] = f
		i = j
	}
	ix.pairs[i] = none
}

func (ix *Index) alloc() int32 {
	if e := ix.free; e != none {
		ix.free = ix.ent(e).next
		return e
	}
	if int(ix.nEntries) == len(ix.pages)*pageSize {
		ix.pages = append(ix.pages, make([]entry, pageSize))
		ix.links = append(ix.links, make([]link, pageSize))
	}
	e := ix.nEntries
	ix.nEntries++
	return e
}

func (ix *Index) release(e int32) {
	*ix.ent(e) = entry{next: ix.free, prev: none}
	*ix.lnk(e) = link{slot: none, chain: none}
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
	ix.slotGen++
	return s
}

// slotRef is an endpoint's slot, kept on the endpoint (PluginState) so
// scoring finds it without hashing the address. slot none records that
// the address had no slot while ix.slotGen was gen: most candidates of a
// large pool hold nothing, and they are looked up on every decision.
type slotRef struct {
	slot int32
	gen  uint64
}

// slotOfEndpoint is ep's slot, read from the endpoint when it has been
// seen before, else from slotOf. A kept slot is trusted only while the
// slot still belongs to ep's address (Forget clears a freed slot's
// address, and slots are reused); a kept absence only while no slot has
// been given out since. The caller holds ix.mu.
func (ix *Index) slotOfEndpoint(ep *datastore.Endpoint) (int32, bool) {
	if r, _ := ep.PluginState(ix).(*slotRef); r != nil {
		if r.slot == none {
			if r.gen == ix.slotGen {
				return none, false
			}
		} else if int(r.slot) < len(ix.slots) && ix.slots[r.slot].address == ep.Address {
			return r.slot, true
		}
	}
	s, ok := ix.slotOf[ep.Address]
	if !ok {
		s = none
	}
	ep.SetPluginState(ix, &slotRef{slot: s, gen: ix.slotGen})
	return s, ok
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
	l := &ix.slots[ix.lnk(e).slot]
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

// unlinkChain removes e from its hash chain, and the hash from byHash when
// e was its last entry.
func (ix *Index) unlinkChain(e int32) {
	pos, ok := ix.findHash(ix.ent(e).hash)
	if !ok {
		return // unreachable: every live entry's hash is in byHash
	}
	next := ix.lnk(e).chain
	if ix.heads[pos] == e {
		ix.heads[pos] = next
		if next == none {
			ix.deleteHashAt(pos)
		}
		return
	}
	for p := ix.heads[pos]; p != none; p = ix.lnk(p).chain {
		if pl := ix.lnk(p); pl.chain == e {
			pl.chain = next
			return
		}
	}
}

// drop removes entry e from both tables and its chain and frees it; the
// caller has unlinked it from its LRU list or is discarding the list.
func (ix *Index) drop(e int32) {
	ix.deletePair(e)
	ix.unlinkChain(e)
	ix.release(e)
	ix.live--
}

// insert records h for slot s as most recent, evicting the slot's least
// recent block when over capacity.
func (ix *Index) insert(h uint64, s int32) {
	ppos, e := ix.findPair(h, s)
	if e != none {
		if ix.slots[s].head != e {
			ix.unlinkLRU(e)
			ix.pushFront(s, e)
		}
		return
	}
	if (ix.live+1)*4 > len(ix.pairs)*3 {
		ix.resizePairs(grownSize(len(ix.pairs)))
		ppos, _ = ix.findPair(h, s)
	}
	hpos, found := ix.findHash(h)
	if !found && (ix.used+1)*4 > len(ix.keys)*3 {
		ix.resizeHashes(grownSize(len(ix.keys)))
		hpos, _ = ix.findHash(h)
	}
	e = ix.alloc()
	ix.ent(e).hash = h
	l := ix.lnk(e)
	l.slot, l.chain = s, none
	if found {
		l.chain = ix.heads[hpos]
	} else {
		ix.keys[hpos] = h
		ix.used++
	}
	ix.heads[hpos] = e
	ix.pairs[ppos] = e
	ix.pushFront(s, e)
	ix.live++
	if ix.slots[s].size > ix.capacity {
		old := ix.slots[s].tail
		ix.unlinkLRU(old)
		ix.drop(old)
	}
}

// Record notes that the blocks hashes (a prompt's chain, first block first)
// were sent to address. The first block is recorded as the most recent, so
// under capacity pressure an endpoint forgets a prompt's tail before its
// head: the head is what other prompts share. Pass whole chains from block
// 0 (as AppendBlockHashes returns them): scoring relies on every endpoint
// holding a prefix-closed set of each chain's blocks.
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
// reused by the next new endpoint, and the tables shrink when mostly empty.
func (ix *Index) Forget(address string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	s, ok := ix.slotOf[address]
	if !ok {
		return
	}
	for e := ix.slots[s].head; e != none; {
		next := ix.ent(e).next
		ix.drop(e)
		e = next
	}
	ix.slots[s] = endpointLRU{head: none, tail: none}
	delete(ix.slotOf, address)
	ix.freeSlots = append(ix.freeSlots, s)
	if len(ix.keys) > minTableSize && ix.used*8 < len(ix.keys) {
		ix.resizeHashes(shrunkSize(ix.used))
	}
	if len(ix.pairs) > minTableSize && ix.live*8 < len(ix.pairs) {
		ix.resizePairs(shrunkSize(ix.live))
	}
}

// scoreScratch is per-call scratch for score, pooled by the scorer.
type scoreScratch struct {
	runs  []int32  // per endpoint slot: leading blocks held
	stamp []uint32 // per endpoint slot: last chain walk that saw it
	cand  []int32  // per candidate: its endpoint slot, or none
	set   []int32  // candidate slots holding block 0, partitioned in place
	tasks []task
}

// task: every slot in set[i:j] holds blocks [0, lo) and lacks block hi
// (hi == len(hashes) stands for "beyond the prompt"), so its run is in
// [lo, hi].
type task struct{ lo, hi, i, j int32 }

// heldRun is how many leading blocks of hashes some endpoint holds, any
// endpoint, candidate or not. Every endpoint's blocks of a chain are
// prefix-closed (see score), so their union is too, and a binary search
// over block positions finds its end.
func (ix *Index) heldRun(hashes []uint64) int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if len(hashes) == 0 {
		return 0
	}
	if _, ok := ix.findHash(hashes[0]); !ok {
		return 0
	}
	lo, hi := 1, len(hashes) // blocks [0, lo) are held; block hi is not (or is beyond)
	for lo < hi {
		mid := (lo + hi) / 2
		if _, ok := ix.findHash(hashes[mid]); ok {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// runOf is how many leading blocks of hashes the endpoint at address
// holds: a binary search over block positions (runs are prefix-closed;
// see score), a few hash probes.
func (ix *Index) runOf(hashes []uint64, address string) int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	s, ok := ix.slotOf[address]
	if !ok || len(hashes) == 0 {
		return 0
	}
	held := func(i int) bool { _, e := ix.findPair(hashes[i], s); return e != none }
	if !held(0) {
		return 0
	}
	lo, hi := 1, len(hashes) // blocks [0, lo) are held; block hi is not (or is beyond)
	for lo < hi {
		mid := (lo + hi) / 2
		if held(mid) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// score writes, for each candidate, the number of leading blocks of hashes
// its endpoint holds, divided by len(hashes).
//
// It relies on an invariant Record maintains: an endpoint that holds block
// b+1 of a chain also holds block b. (Every record containing block b+1
// also contains block b and makes it the more recent of the two, so LRU
// eviction always drops b+1 first.) Runs can therefore be found by a
// parallel binary search over block positions: walking the chain of block
// m splits the endpoints still in question into those whose run is > m and
// those whose run is <= m. The chain of the last block is walked first, so
// the common extremes — the whole prompt cached, or only a shared head —
// cost two or three chain walks instead of one per block.
func (ix *Index) score(hashes []uint64, cands []scheduling.Candidate, scores []float64, sc *scoreScratch) {
	for i := range scores {
		scores[i] = 0
	}
	nb := int32(len(hashes))
	if nb == 0 {
		return
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	pos, ok := ix.findHash(hashes[0])
	if !ok {
		return // no endpoint has even the first block
	}
	n := len(ix.slots)
	if cap(sc.runs) < n {
		c := n + n/4 + 8
		sc.runs = make([]int32, n, c)
		sc.stamp = make([]uint32, n, c)
	}
	runs, stamp := sc.runs[:n], sc.stamp[:n]
	clear(runs)
	clear(stamp)
	gen := uint32(1)

	// Map candidates to slots and stamp them, so that only candidates
	// take part in the search.
	cand := sc.cand[:0]
	for i := range cands {
		s, ok := ix.slotOfEndpoint(cands[i].Endpoint)
		if !ok {
			s = none
		} else {
			stamp[s] = gen
		}
		cand = append(cand, s)
	}
	sc.cand = cand
	set := sc.set[:0]
	for e := ix.heads[pos]; e != none; {
		l := ix.lnk(e)
		if stamp[l.slot] == gen {
			set = append(set, l.slot)
		}
		e = l.chain
	}
	sc.set = set
	tasks := append(sc.tasks[:0], task{lo: 1, hi: nb, i: 0, j: int32(len(set))})
	first := true
	for len(tasks) > 0 {
		t := tasks[len(tasks)-1]
		tasks = tasks[:len(tasks)-1]
		if t.i == t.j {
			continue
		}
		if t.lo == t.hi {
			for _, s := range set[t.i:t.j] {
				runs[s] = t.lo
			}
			continue
		}
		mid := (t.lo + t.hi) / 2
		if first {
			mid, first = t.hi-1, false
		}
		gen++
		if p, ok := ix.findHash(hashes[mid]); ok {
			for e := ix.heads[p]; e != none; {
				l := ix.lnk(e)
				stamp[l.slot] = gen
				e = l.chain
			}
		}
		k := t.i // partition: holders of block mid first
		for x := t.i; x < t.j; x++ {
			if stamp[set[x]] == gen {
				set[k], set[x] = set[x], set[k]
				k++
			}
		}
		tasks = append(tasks, task{lo: mid + 1, hi: t.hi, i: t.i, j: k}, task{lo: t.lo, hi: mid, i: k, j: t.j})
	}
	sc.tasks = tasks
	total := float64(nb)
	for i, s := range cand {
		if s != none {
			scores[i] = float64(runs[s]) / total
		}
	}
}
