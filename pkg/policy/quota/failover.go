package quota

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// FailureMode is what a Failover does while Redis is unreachable.
type FailureMode uint8

const (
	// FailOpen keeps serving with this replica's own in-memory counters
	// (each limit scaled by LocalScale), so an outage of Redis is not an
	// outage of the gateway; limits then hold per replica, not in total.
	FailOpen FailureMode = iota
	// FailClosed refuses requests that quotas apply to with 503 until Redis
	// answers again: no request runs uncounted.
	FailClosed
)

// FailoverOptions configure a Failover.
type FailoverOptions struct {
	Mode FailureMode
	// LocalScale multiplies every limit in open mode's local fallback
	// (default 1: each replica may use the whole limit). With N replicas,
	// 1/N keeps the total near the limit during an outage.
	LocalScale float64
	// MinBackoff and MaxBackoff bound the health probe's retry interval
	// (defaults 100ms and 5s); it doubles after every failed PING.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	Metrics                *Metrics
}

// Failover is the store for several replicas: counters in Redis while it
// answers, the configured failure mode while it does not. The first failed
// call marks Redis down and starts a health probe (PING with exponential
// backoff); the first PING that succeeds switches back. Reservations keep
// the store that admitted them, so a request admitted locally settles
// locally. Counters kept locally during an outage are not copied to Redis:
// after recovery the shared windows hold what Redis counted before it went
// away (or nothing, after a restart without persistence).
type Failover struct {
	redis *RedisStore
	local *MemoryStore
	o     FailoverOptions

	down    atomic.Bool
	probeMu sync.Mutex
	probing bool
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

var _ Store = (*Failover)(nil)

// NewFailover wraps r with the failure mode of o.
func NewFailover(r *RedisStore, o FailoverOptions) (*Failover, error) {
	if o.LocalScale == 0 {
		o.LocalScale = 1
	}
	if o.LocalScale < 0 || o.LocalScale > 1 {
		return nil, fmt.Errorf("quota: localScale must be in (0, 1], not %g", o.LocalScale)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Failover{redis: r, local: newMemoryStore(o.LocalScale), o: o, stop: make(chan struct{})}, nil
}

// Down reports whether Redis is considered unreachable now.
func (f *Failover) Down() bool { return f.down.Load() }

// Close stops the probe and closes the Redis store.
func (f *Failover) Close() error {
	f.once.Do(func() { close(f.stop) })
	f.wg.Wait()
	return f.redis.Close()
}

func (f *Failover) admit(ctx context.Context, now time.Time, charges []charge, out []Usage) (Ticket, bool, error) {
	if !f.down.Load() {
		t, ok, err := f.redis.admit(ctx, now, charges, out)
		if err == nil {
			return t, ok, nil
		}
		if ctx.Err() != nil {
			return Ticket{}, false, err // the client left; not Redis's fault
		}
		f.o.Metrics.storeError("admit", err)
		f.markDown(err)
	}
	if f.o.Mode == FailClosed {
		f.o.Metrics.refusedUnavailable()
		return Ticket{}, false, ErrUnavailable
	}
	return f.local.admit(ctx, now, charges, out)
}

// settle is never called on a Failover: tickets name the store that
// admitted them (Redis or the local fallback).
func (f *Failover) settle(ctx context.Context, now time.Time, t *Ticket, delta []int64) error {
	return f.redis.settle(ctx, now, t, delta)
}

// markDown switches to the failure mode and starts the probe, once.
func (f *Failover) markDown(err error) {
	f.probeMu.Lock()
	defer f.probeMu.Unlock()
	f.down.Store(true)
	if f.probing {
		return
	}
	select {
	case <-f.stop:
		return
	default:
	}
	f.probing = true
	f.o.Metrics.setFallback(true)
	mode := "open: local limits"
	if f.o.Mode == FailClosed {
		mode = "closed: 503"
	}
	f.o.Logger.Warn("quota store unreachable; failure mode applies until it answers", "mode", mode, "err", err)
	f.wg.Add(1)
	go f.probe()
}

// probe PINGs Redis with exponential backoff until it answers.
func (f *Failover) probe() {
	defer f.wg.Done()
	wait := f.o.MinBackoff
	since := time.Now()
	for {
		t := time.NewTimer(wait)
		select {
		case <-f.stop:
			t.Stop()
			return
		case <-t.C:
		}
		err := f.redis.Ping(context.Background())
		if err == nil {
			f.probeMu.Lock()
			f.down.Store(false)
			f.probing = false
			f.probeMu.Unlock()
			f.o.Metrics.setFallback(false)
			f.o.Logger.Info("quota store answers again; shared limits apply", "after", time.Since(since).Round(time.Millisecond))
			return
		}
		f.o.Metrics.storeError("probe", err)
		wait = min(2*wait, f.o.MaxBackoff)
	}
}
