// Package peerload shares igw's in-flight request counts among igw
// replicas that run active-active (several igw serve or igw epp replicas
// routing to the same pool without leader election). Each replica knows
// the requests it sent itself the moment it sends them; the model
// servers' scraped metrics show everyone's, but only a scrape interval
// later. Without sharing, every replica sees the others' fresh requests
// late and they pile onto the same "idle" endpoint. With it, each replica
// publishes its own per-endpoint counts to Redis (the engine the token
// quotas already use) every Interval and adds the other replicas' counts
// to its endpoints' in-flight (datastore.Endpoint.SetPeerInFlight), so the
// queue scorer, the prefix scorers' load bound and saturation detection
// see the pool's whole load.
//
// Staleness bound. A replica's count reaches the others at most Interval
// plus two Redis round trips after it changed (default 100 ms + RTT). A
// count older than Staleness (default 1 s) is ignored, so a replica that
// died or lost Redis stops counting within Staleness, and its fields are
// deleted after ten times that. When Redis cannot be reached the replica
// routes on its own view (peers count 0 after Staleness) and logs it: a
// sharing failure degrades balance, never availability.
//
// Memory and Redis load: one hash (KeyPrefix + "inflight") with a field
// per (replica, endpoint); each replica writes its fields and reads the
// hash once per Interval: two round trips, replicas × endpoints fields.
package peerload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/igw-dev/igw/pkg/datastore"
)

// Defaults of Options.
const (
	DefaultInterval  = 100 * time.Millisecond
	DefaultStaleness = time.Second
	DefaultTimeout   = 500 * time.Millisecond
	DefaultKeyPrefix = "igw:peerload:"
)

// Options configure a Sharer.
type Options struct {
	// Addr is the Redis server (host:port); required.
	Addr string
	// Replica names this igw replica, unique among the replicas sharing
	// the key (default: host name and process id).
	Replica string
	// Interval between publications (DefaultInterval); Staleness is the
	// age past which a peer's count is ignored (DefaultStaleness, at
	// least twice Interval); Timeout bounds each Redis call
	// (DefaultTimeout).
	Interval, Staleness, Timeout time.Duration
	// KeyPrefix namespaces the hash (DefaultKeyPrefix).
	KeyPrefix string
	Log       *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Sharer publishes this replica's in-flight counts and applies the
// others'. Safe for concurrent use.
type Sharer struct {
	o      Options
	client *redis.Client
	key    string

	mu  sync.Mutex
	eps []*datastore.Endpoint
}

// New returns a Sharer; nothing is sent until Run.
func New(o Options) (*Sharer, error) {
	if o.Addr == "" {
		return nil, errors.New("peerload: a redis address is required")
	}
	if o.Replica == "" {
		host, _ := osHostname()
		o.Replica = host + "-" + strconv.Itoa(osPid())
	}
	if strings.ContainsRune(o.Replica, '|') {
		return nil, fmt.Errorf("peerload: replica name %q must not contain '|'", o.Replica)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Staleness <= 0 {
		o.Staleness = DefaultStaleness
	}
	if o.Staleness < 2*o.Interval {
		return nil, fmt.Errorf("peerload: staleness %v must be at least twice the interval %v", o.Staleness, o.Interval)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	client := redis.NewClient(&redis.Options{Addr: o.Addr, DialTimeout: o.Timeout, ReadTimeout: o.Timeout,
		WriteTimeout: o.Timeout, PoolTimeout: o.Timeout, ContextTimeoutEnabled: true, MaxRetries: -1, PoolSize: 2,
		DisableIdentity: true, Protocol: 2})
	return &Sharer{o: o, client: client, key: o.KeyPrefix + "inflight"}, nil
}

// Replica is this replica's name in the shared hash.
func (s *Sharer) Replica() string { return s.o.Replica }

// SetEndpoints replaces the endpoints whose counts are shared.
func (s *Sharer) SetEndpoints(eps []*datastore.Endpoint) {
	s.mu.Lock()
	s.eps = append(s.eps[:0:0], eps...)
	s.mu.Unlock()
}

// Run publishes and applies counts every Interval until ctx ends, then
// deletes this replica's fields (best effort) and closes the connection.
func (s *Sharer) Run(ctx context.Context) error {
	t := time.NewTicker(s.o.Interval)
	defer t.Stop()
	failing := false
	for {
		err := s.Sync(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			s.o.Log.Warn("peer load: redis unreachable; routing on this replica's own in-flight counts", "err", err)
			failing = true
		case err == nil && failing:
			s.o.Log.Info("peer load: redis reachable again")
			failing = false
		}
		if failing {
			s.expire()
		}
		select {
		case <-ctx.Done():
			s.leave()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Sync publishes this replica's counts and applies the peers' once.
func (s *Sharer) Sync(ctx context.Context) error {
	s.mu.Lock()
	eps := s.eps
	s.mu.Unlock()
	now := s.o.Now()
	stamp := strconv.FormatInt(now.UnixMilli(), 10)
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	if len(eps) > 0 {
		fields := make([]any, 0, 2*len(eps))
		for _, ep := range eps {
			fields = append(fields, s.o.Replica+"|"+ep.Address, strconv.FormatInt(ep.OwnInFlight(), 10)+"|"+stamp)
		}
		if err := s.client.HSet(ctx, s.key, fields...).Err(); err != nil {
			return fmt.Errorf("peerload: publish: %w", err)
		}
	}
	all, err := s.client.HGetAll(ctx, s.key).Result()
	if err != nil {
		return fmt.Errorf("peerload: read: %w", err)
	}
	peers := map[string]int64{}
	var dead []string
	for field, value := range all {
		replica, addr, ok := strings.Cut(field, "|")
		if !ok || replica == s.o.Replica {
			continue
		}
		countText, msText, ok := strings.Cut(value, "|")
		n, err1 := strconv.ParseInt(countText, 10, 64)
		ms, err2 := strconv.ParseInt(msText, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			dead = append(dead, field) // not ours to understand: drop it
			continue
		}
		age := now.Sub(time.UnixMilli(ms))
		switch {
		case age > 10*s.o.Staleness:
			dead = append(dead, field)
		case age <= s.o.Staleness && n > 0:
			peers[addr] += n
		}
	}
	for _, ep := range eps {
		ep.SetPeerInFlight(peers[ep.Address])
	}
	if len(dead) > 0 {
		_ = s.client.HDel(ctx, s.key, dead...).Err()
	}
	return nil
}

// expire forgets the peers' counts while Redis cannot be read; called
// after each failed sync, so counts vanish within one interval.
func (s *Sharer) expire() {
	s.mu.Lock()
	eps := s.eps
	s.mu.Unlock()
	for _, ep := range eps {
		ep.SetPeerInFlight(0)
	}
}

// leave removes this replica's fields so the others stop counting it at
// once, not after Staleness.
func (s *Sharer) leave() {
	s.mu.Lock()
	eps := s.eps
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	if len(eps) > 0 {
		fields := make([]string, len(eps))
		for i, ep := range eps {
			fields[i] = s.o.Replica + "|" + ep.Address
		}
		_ = s.client.HDel(ctx, s.key, fields...).Err()
	}
	_ = s.client.Close()
}
