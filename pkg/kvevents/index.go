package kvevents

import (
	"hash/fnv"
	"slices"
	"strings"
	"sync"
)

// Index layout. Per endpoint, a map from blockKey (igw's chained token
// hash, LoRA, KV-cache group) to an entry, a second from the engine's hash
// to the same entry, in a slice of entries, which are linked in
// store order (an intrusive list of int32 links): when the endpoint holds
// its cap of blocks, the oldest stored is dropped, so memory is bounded
// whatever the engine claims to cache. An entry is 40 bytes; each map's
// slot (a 24-byte key and a 4-byte value at Go's load factor) adds about as
// much again: BenchmarkIndex_StoreMillionBlocks measures the total per
// million blocks (docs: doc.go).
//
// Certainty. Each endpoint has an epoch that a sequence gap advances;
// entries remember the epoch they were stored in. Entries of an older epoch
// are uncertain (a BlockRemoved may have been lost in the gap), so Match
// does not count them. They become certain again when the engine stores
// them anew, and leave when it removes them or the cap evicts them; the
// endpoint has resynchronised when none is left, or at once on
// AllBlocksCleared or a publisher restart (both empty the endpoint).

// blockKey is a block's identity: its hash (igw's chained hash of its
// token ids when the event carried them, else the engine's hash), the
// adapter and the KV-cache group.
type blockKey struct {
	hash  uint64
	lora  uint32
	group uint32
}

type entry struct {
	key        blockKey
	engine     uint64 // the engine's hash of the block, for BlockRemoved
	prev, next int32  // store order: prev is older
	epoch      uint32
}

const nilEntry int32 = -1

// groupInfo is what the index learned about one KV-cache group of an
// endpoint: a sliding-window group holds only the last windowBlocks blocks
// of a prefix, so it is matched differently from full attention.
type groupInfo struct {
	windowBlocks int // 0: full attention
}

type endpointIndex struct {
	mu    sync.RWMutex
	byKey map[blockKey]int32
	// byEngine finds an entry by the engine's hash (same lora and group):
	// BlockRemoved and a BlockStored's parent name blocks that way.
	byEngine  map[blockKey]int32
	blockSize int // the block size the endpoint's events declare
	entries   []entry
	free      int32 // free list through next
	oldest    int32
	newest    int32
	epoch     uint32
	uncertain int
	groups    map[uint32]groupInfo
	// adapters counts entries per non-zero LoRA key, so a BlockRemoved
	// (which names no adapter) finds adapter blocks without a scan.
	adapters map[uint32]int
}

// Index is the exact prefix-cache index built from KV-cache events: for
// every endpoint, the blocks its engine reports holding. Safe for
// concurrent use: each endpoint's events are applied under its own lock,
// and matching takes read locks.
type Index struct {
	capacity int

	mu        sync.RWMutex
	endpoints map[string]*endpointIndex
}

// DefaultCapacity is the default cap on blocks tracked per endpoint: a
// large GPU's KV cache (an H100 serving an 8B model holds about 26,000
// blocks of 16 tokens) several times over.
const DefaultCapacity = 1 << 17

// NewIndex returns an empty index tracking at most capacity blocks per
// endpoint (DefaultCapacity when capacity ≤ 0).
func NewIndex(capacity int) *Index {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Index{capacity: capacity, endpoints: map[string]*endpointIndex{}}
}

// LoRAKey is the adapter part of a block's key. Engines name adapters by
// lora_name (newer vLLM) or only by lora_id; a request knows the adapter by
// name. Blocks that carry only an id get a key no name produces, so they
// never match a request (a miss, never a false hit).
func LoRAKey(name string, id int64, hasID bool) uint32 {
	switch {
	case name != "":
		h := fnv.New32a()
		_, _ = h.Write([]byte(name))
		return h.Sum32() | 1
	case hasID:
		return uint32(id)<<1 | 2 // even (names give odd keys), never 0
	}
	return 0
}

func (ix *Index) endpoint(name string, create bool) *endpointIndex {
	ix.mu.RLock()
	ep := ix.endpoints[name]
	ix.mu.RUnlock()
	if ep != nil || !create {
		return ep
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ep = ix.endpoints[name]; ep == nil {
		ep = &endpointIndex{byKey: map[blockKey]int32{}, byEngine: map[blockKey]int32{}, free: nilEntry, oldest: nilEntry, newest: nilEntry, groups: map[uint32]groupInfo{}, adapters: map[uint32]int{}}
		ix.endpoints[name] = ep
	}
	return ep
}

// Apply applies one endpoint's decoded events in order.
func (ix *Index) Apply(endpoint string, events []Event) {
	ep := ix.endpoint(endpoint, true)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for i := range events {
		ev := &events[i]
		switch ev.Kind {
		case KindBlockStored:
			ep.stored(ev, ix.capacity)
		case KindBlockRemoved:
			group := uint32(ev.GroupIdx)
			// A removal names hashes without the adapter: drop the hash
			// under every adapter key the endpoint holds it with.
			for _, h := range ev.BlockHashes {
				ep.removeHash(h, group)
			}
		case KindAllBlocksCleared:
			ep.reset()
		}
	}
}

// noteGroup learns a group's attention kind from a BlockStored.
func (ep *endpointIndex) noteGroup(group uint32, ev *Event) {
	g := groupInfo{}
	kind := strings.ToLower(ev.SpecKind)
	if ev.SlidingWindow > 0 || strings.Contains(kind, "sliding") || strings.Contains(kind, "chunked") {
		bs := max(ev.BlockSize, 1)
		g.windowBlocks = max((ev.SlidingWindow+bs-1)/bs, 1)
	}
	if old, ok := ep.groups[group]; !ok || old != g {
		ep.groups[group] = g
	}
}

// stored applies a BlockStored. When it carries the blocks' token ids
// (vLLM and SGLang do), each block is keyed by igw's chained hash of them
// (ChainHash), chained from the parent's igw hash, so that matching does
// not depend on the engine's hash function or its seed; a block whose
// parent the index does not hold (stored before the subscription joined,
// or past the cap) cannot be chained and is not tracked, which costs hits,
// never gives false ones. Without token ids the engine's hash is the key.
func (ep *endpointIndex) stored(ev *Event, capacity int) {
	lora := LoRAKey(ev.LoRAName, ev.LoRAID, ev.HasLoRAID)
	group := uint32(ev.GroupIdx)
	ep.noteGroup(group, ev)
	bs := ev.BlockSize
	if bs <= 0 || len(ev.TokenIDs) != bs*len(ev.BlockHashes) {
		for _, h := range ev.BlockHashes {
			ep.store(blockKey{h, lora, group}, h, capacity)
		}
		return
	}
	ep.blockSize = bs
	chain := RootHash
	if ev.HasParent {
		i, ok := ep.byEngine[blockKey{ev.ParentHash, lora, group}]
		if !ok {
			return
		}
		chain = ep.entries[i].key.hash
	}
	for b, h := range ev.BlockHashes {
		chain = ChainHash(chain, ev.TokenIDs[b*bs:(b+1)*bs])
		ep.store(blockKey{chain, lora, group}, h, capacity)
	}
}

func (ep *endpointIndex) store(k blockKey, engine uint64, capacity int) {
	if i, ok := ep.byKey[k]; ok {
		e := &ep.entries[i]
		if e.epoch != ep.epoch {
			e.epoch = ep.epoch
			ep.uncertain--
		}
		if e.engine != engine {
			ek := blockKey{e.engine, k.lora, k.group}
			if ep.byEngine[ek] == i {
				delete(ep.byEngine, ek)
			}
			e.engine = engine
			ep.byEngine[blockKey{engine, k.lora, k.group}] = i
		}
		return
	}
	if len(ep.byKey) >= capacity {
		ep.drop(ep.oldest)
	}
	i := ep.free
	if i != nilEntry {
		ep.free = ep.entries[i].next
	} else {
		ep.entries = append(ep.entries, entry{})
		i = int32(len(ep.entries) - 1)
	}
	ep.entries[i] = entry{key: k, engine: engine, prev: ep.newest, next: nilEntry, epoch: ep.epoch}
	if ep.newest != nilEntry {
		ep.entries[ep.newest].next = i
	} else {
		ep.oldest = i
	}
	ep.newest = i
	ep.byKey[k] = i
	ep.byEngine[blockKey{engine, k.lora, k.group}] = i
	if k.lora != 0 {
		ep.adapters[k.lora]++
	}
}

func (ep *endpointIndex) drop(i int32) {
	e := &ep.entries[i]
	if e.prev != nilEntry {
		ep.entries[e.prev].next = e.next
	} else {
		ep.oldest = e.next
	}
	if e.next != nilEntry {
		ep.entries[e.next].prev = e.prev
	} else {
		ep.newest = e.prev
	}
	if e.epoch != ep.epoch {
		ep.uncertain--
	}
	delete(ep.byKey, e.key)
	if ek := (blockKey{e.engine, e.key.lora, e.key.group}); ep.byEngine[ek] == i {
		delete(ep.byEngine, ek)
	}
	if l := e.key.lora; l != 0 {
		if ep.adapters[l]--; ep.adapters[l] == 0 {
			delete(ep.adapters, l)
		}
	}
	*e = entry{next: ep.free}
	ep.free = i
}

func (ep *endpointIndex) removeHash(h uint64, group uint32) {
	if i, ok := ep.byEngine[blockKey{h, 0, group}]; ok {
		ep.drop(i)
	}
	// Adapters are few per endpoint (GPU slots): try each one's key.
	for lora := range ep.adapters {
		if i, ok := ep.byEngine[blockKey{h, lora, group}]; ok {
			ep.drop(i)
		}
	}
}

func (ep *endpointIndex) reset() {
	clear(ep.byKey)
	clear(ep.byEngine)
	ep.entries = ep.entries[:0]
	ep.free, ep.oldest, ep.newest = nilEntry, nilEntry, nilEntry
	ep.uncertain = 0
	clear(ep.groups)
	clear(ep.adapters)
}

// MarkGap records that events of endpoint were lost: everything the index
// holds for it becomes uncertain until the engine confirms or removes it.
func (ix *Index) MarkGap(endpoint string) {
	ep := ix.endpoint(endpoint, true)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.epoch++
	ep.uncertain = len(ep.byKey)
}

// Clear empties endpoint's entries (its engine restarted with an empty
// cache); the endpoint stays known.
func (ix *Index) Clear(endpoint string) {
	if ep := ix.endpoint(endpoint, false); ep != nil {
		ep.mu.Lock()
		ep.reset()
		ep.mu.Unlock()
	}
}

// Forget drops endpoint entirely: it left the pool, and its entries must
// not outlive it (the stale-entries pitfall of REFERENCE §10).
func (ix *Index) Forget(endpoint string) {
	ix.mu.Lock()
	delete(ix.endpoints, endpoint)
	ix.mu.Unlock()
}

// Match is how many leading blocks of a prompt endpoint holds for certain,
// the prompt given as the engine's block hashes (hashes[i] chains blocks
// 0..i) computed with adapter lora (LoRAKey; 0 for the base model). For a
// hybrid model every KV-cache group must hold what a hit needs: full
// attention groups every block of the prefix, sliding-window groups the
// blocks of the window ending at it, so a sliding-window or hybrid cache
// never yields a false hit.
func (ix *Index) Match(endpoint string, hashes []uint64, lora uint32) int {
	ep := ix.endpoint(endpoint, false)
	if ep == nil {
		return 0
	}
	ep.mu.RLock()
	defer ep.mu.RUnlock()
	if len(ep.groups) == 0 {
		return 0
	}
	// Full-attention groups: the longest run from the first block.
	n := len(hashes)
	for g, info := range ep.groups {
		if info.windowBlocks == 0 {
			n = ep.run(hashes[:n], lora, g)
		}
	}
	// Sliding-window groups: shorten the match until each holds the window
	// of blocks ending at it.
	for n > 0 {
		ok := true
		for g, info := range ep.groups {
			if info.windowBlocks == 0 {
				continue
			}
			for i := max(n-info.windowBlocks, 0); i < n; i++ {
				if !ep.holds(blockKey{hashes[i], lora, g}) {
					ok = false
					break
				}
			}
			if !ok {
				break
			}
		}
		if ok {
			break
		}
		n--
	}
	return n
}

// run is how many leading hashes group g holds for certain.
func (ep *endpointIndex) run(hashes []uint64, lora, g uint32) int {
	for i, h := range hashes {
		if !ep.holds(blockKey{h, lora, g}) {
			return i
		}
	}
	return len(hashes)
}

// holds reports whether k is tracked and certain.
func (ep *endpointIndex) holds(k blockKey) bool {
	i, ok := ep.byKey[k]
	return ok && ep.entries[i].epoch == ep.epoch
}

// EndpointStats describe one endpoint's entries.
type EndpointStats struct {
	// Blocks is the number of tracked blocks; Uncertain of them are from
	// before a sequence gap and not matched.
	Blocks, Uncertain int
}

// Stats reports endpoint's entries (zero when unknown).
func (ix *Index) Stats(endpoint string) EndpointStats {
	ep := ix.endpoint(endpoint, false)
	if ep == nil {
		return EndpointStats{}
	}
	ep.mu.RLock()
	defer ep.mu.RUnlock()
	return EndpointStats{Blocks: len(ep.byKey), Uncertain: ep.uncertain}
}

// Hashes lists the engine's hashes of the blocks tracked for endpoint
// (any adapter and group, certain or not), sorted: the view tests compare
// with an engine's cache dump.
func (ix *Index) Hashes(endpoint string) []uint64 {
	ep := ix.endpoint(endpoint, false)
	if ep == nil {
		return nil
	}
	ep.mu.RLock()
	out := make([]uint64, 0, len(ep.byKey))
	for _, i := range ep.byKey {
		out = append(out, ep.entries[i].engine)
	}
	ep.mu.RUnlock()
	slices.Sort(out)
	return slices.Compact(out)
}

// Endpoints lists the endpoints the index holds entries for.
func (ix *Index) Endpoints() []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]string, 0, len(ix.endpoints))
	for name := range ix.endpoints {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
