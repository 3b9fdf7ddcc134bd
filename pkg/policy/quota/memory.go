package quota

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// memoryShards is how many independently locked parts a MemoryStore has:
// enough that requests of different tenants rarely wait for each other on
// two cores or twenty.
const memoryShards = 64

// sweepEvery is how often a shard drops counters whose windows are empty,
// so counters for identities that stopped sending (or for made-up model
// names on a catch-all route) do not accumulate.
const sweepEvery = time.Minute

// MemoryStore keeps counters in this process: the store for a single
// replica, and the local fallback of a Failover. Counters are spread over
// lock-striped shards; an admission locks the shards of its charges in
// ascending order (so two admissions never deadlock) and checks and adds
// all charges under those locks, so it is atomic. The hot path allocates
// only when a counter is seen for the first time.
type MemoryStore struct {
	seed   maphash.Seed
	scale  float64 // multiplies every Max (a Failover's local share); 1 = as configured
	shards [memoryShards]memShard
}

type memShard struct {
	mu        sync.Mutex
	counters  map[counterKey]*counter
	nextSweep int64 // Unix ms
	_         [32]byte
}

type counterKey struct {
	limit string // Limit.Name: counters outlive a reload that rebuilds the Limits
	sub   subject
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return newMemoryStore(1) }

func newMemoryStore(scale float64) *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), scale: scale}
	for i := range s.shards {
		s.shards[i].counters = map[counterKey]*counter{}
	}
	return s
}

func (s *MemoryStore) shardOf(k counterKey) uint8 {
	h := maphash.String(s.seed, k.sub.key) ^ maphash.String(s.seed, k.sub.tenant)*31 ^
		maphash.String(s.seed, k.sub.model)*961 ^ maphash.String(s.seed, k.limit)*0x9E3779B97F4A7C15
	return uint8(h % memoryShards)
}

// max is a limit's ceiling in this store.
func (s *MemoryStore) max(l *Limit) int64 {
	if s.scale == 1 {
		return l.Max
	}
	return max(1, int64(float64(l.Max)*s.scale))
}

// lockAll locks the distinct shards of charges in ascending order and
// returns them (in a caller-provided array, so nothing escapes).
func (s *MemoryStore) lockAll(charges []charge, ids *[memoryShards]uint8, known bool) []uint8 {
	set := ids[:0]
	for i := range charges {
		if !known {
			charges[i].shard = s.shardOf(counterKey{charges[i].limit.Name, charges[i].sub})
		}
		id := charges[i].shard
		j := len(set)
		dup := false
		for k, v := range set {
			if v == id {
				dup = true
				break
			}
			if v > id {
				j = k
				break
			}
		}
		if dup {
			continue
		}
		set = append(set, 0)
		copy(set[j+1:], set[j:])
		set[j] = id
	}
	for _, id := range set {
		s.shards[id].mu.Lock()
	}
	return set
}

func (s *MemoryStore) unlockAll(set []uint8) {
	for _, id := range set {
		s.shards[id].mu.Unlock()
	}
}

// counterFor returns the counter of ch, creating it; its shard is locked.
func (s *MemoryStore) counterFor(ch *charge, nowMs int64) *counter {
	sh := &s.shards[ch.shard]
	k := counterKey{ch.limit.Name, ch.sub}
	if nowMs >= sh.nextSweep {
		sh.sweep(nowMs)
	}
	c := sh.counters[k]
	if c == nil {
		c = newCounter(ch.limit.Window)
		sh.counters[k] = c
	}
	return c
}

// sweep drops counters whose windows have emptied; the shard is locked.
func (sh *memShard) sweep(nowMs int64) {
	for k, c := range sh.counters {
		c.advance(bucketOf(nowMs, c.widthMs))
		if c.total == 0 {
			delete(sh.counters, k)
		}
	}
	sh.nextSweep = nowMs + sweepEvery.Milliseconds()
}

func (s *MemoryStore) admit(_ context.Context, now time.Time, charges []charge, out []Usage) (Ticket, bool, error) {
	nowMs := now.UnixMilli()
	var ids [memoryShards]uint8
	set := s.lockAll(charges, &ids, false)
	defer s.unlockAll(set)
	var small [typicalCharges]*counter
	cs := small[:0]
	ok := true
	for i := range charges {
		ch := &charges[i]
		w := ch.limit.Window
		wms := w.Width().Milliseconds()
		c := s.counterFor(ch, nowMs)
		c.advance(bucketOf(nowMs, wms))
		cs = append(cs, c)
		m := s.max(ch.limit)
		u := Usage{Limit: ch.limit, Max: m, Used: c.total + ch.n}
		if u.Used > m && ch.n > 0 {
			ok = false
			u.Exhausted = true
			if ch.n <= m {
				u.RetryIn = c.retryIn(nowMs, wms, u.Used-m)
			}
		}
		out[i] = u
	}
	if !ok {
		for i := range charges {
			out[i].Used -= charges[i].n // not admitted: report what is counted
			out[i].ResetIn = cs[i].resetIn(nowMs, charges[i].limit.Window.Width().Milliseconds())
		}
		return Ticket{}, false, nil
	}
	for i := range charges {
		wms := charges[i].limit.Window.Width().Milliseconds()
		cs[i].charge(bucketOf(nowMs, wms), charges[i].n)
		out[i].ResetIn = cs[i].resetIn(nowMs, wms)
	}
	return Ticket{store: s, charges: charges, atMs: nowMs}, true, nil
}

func (s *MemoryStore) settle(_ context.Context, now time.Time, t *Ticket, delta []int64) error {
	nowMs := now.UnixMilli()
	var ids [memoryShards]uint8
	set := s.lockAll(t.charges, &ids, true)
	defer s.unlockAll(set)
	for i := range t.charges {
		if delta[i] == 0 {
			continue
		}
		ch := &t.charges[i]
		wms := ch.limit.Window.Width().Milliseconds()
		c := s.counterFor(ch, nowMs)
		c.advance(bucketOf(nowMs, wms))
		c.add(bucketOf(t.atMs, wms), delta[i])
	}
	return nil
}
