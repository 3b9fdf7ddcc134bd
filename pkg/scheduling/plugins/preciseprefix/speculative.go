package preciseprefix

import (
	"sync"
	"time"
)

// speculative remembers, for a short TTL, the prompt blocks of requests
// just routed, as if the endpoint had already reported caching them: the
// KV events of a prefill arrive only after it, so without this a burst of
// requests sharing a new prefix would scatter before the first one's
// events land. An entry that events do not confirm (the index holds the
// block) before it expires is simply gone; the index, not this, is the
// truth. Bounded in entries: the oldest is dropped first.
type speculative struct {
	ttl time.Duration
	max int

	mu     sync.Mutex
	until  map[specKey]int64 // expiry, unix nanoseconds
	order  []specItem        // insertion order, a queue from head
	head   int
	nowFor func() time.Time
}

type specKey struct {
	endpoint string
	hash     uint64
	lora     uint32
}

type specItem struct {
	key   specKey
	until int64
}

func newSpeculative(ttl time.Duration, maxEntries int) *speculative {
	return &speculative{ttl: ttl, max: maxEntries, until: map[specKey]int64{}, nowFor: time.Now}
}

// record notes that endpoint is about to hold hashes.
func (s *speculative) record(endpoint string, hashes []uint64, lora uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.nowFor().UnixNano()
	s.expire(now)
	until := now + int64(s.ttl)
	for _, h := range hashes {
		k := specKey{endpoint, h, lora}
		s.until[k] = until
		s.order = append(s.order, specItem{k, until})
	}
	for len(s.order)-s.head > s.max {
		s.pop()
	}
	// Reclaim the consumed head of the queue now and then.
	if s.head > len(s.order)/2 && s.head > 1024 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}

func (s *speculative) expire(now int64) {
	for s.head < len(s.order) && s.order[s.head].until <= now {
		s.pop()
	}
}

func (s *speculative) pop() {
	it := s.order[s.head]
	if s.until[it.key] == it.until {
		delete(s.until, it.key)
	}
	s.order[s.head] = specItem{}
	s.head++
}

// run is how many leading hashes endpoint holds speculatively.
func (s *speculative) run(endpoint string, hashes []uint64, lora uint32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.nowFor().UnixNano()
	for i, h := range hashes {
		if u, ok := s.until[specKey{endpoint, h, lora}]; !ok || u <= now {
			return i
		}
	}
	return len(hashes)
}

// size is the number of live entries. Entries of an endpoint that left
// the pool are not dropped eagerly: they expire within the TTL, and the
// endpoint is no candidate meanwhile.
func (s *speculative) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.until)
}
