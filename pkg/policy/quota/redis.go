package quota

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure a RedisStore.
type RedisOptions struct {
	// Addr is the Redis server's host:port.
	Addr string
	// Username and Password authenticate (ACL or requirepass); DB selects
	// the database.
	Username, Password string
	DB                 int
	// KeyPrefix starts every counter key (default "igw:quota:"), so several
	// gateways (or other applications) can share a Redis.
	KeyPrefix string
	// Timeout bounds connecting and each command (default 250ms): an
	// admission waits at most this long before the failure mode applies.
	Timeout time.Duration
	// PoolSize is the most connections kept open (default: go-redis's, 10
	// per CPU).
	PoolSize int
	// Dialer, if set, opens connections (tests wrap it to count round
	// trips).
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// Metrics, if set, counts settlements that failed in the background.
	Metrics *Metrics
}

// DefaultRedisTimeout bounds a Redis call when RedisOptions leave it unset.
const DefaultRedisTimeout = 250 * time.Millisecond

// settleQueue bounds settlements waiting to be sent; past it a settlement
// is sent by the caller itself.
const settleQueue = 4096

// settleBatch is the most settlements sent in one pipeline (one round trip).
const settleBatch = 128

// RedisStore keeps counters in Redis, shared by every replica that points
// at it. An admission is one EVALSHA of a script that checks and charges
// all the request's counters atomically (EVAL when Redis answers NOSCRIPT,
// after a restart or SCRIPT FLUSH). Settlements are queued and sent by a
// background sender, many per pipeline, so they add no round trip to the
// request; Flush waits for them.
type RedisStore struct {
	client  *redis.Client
	prefix  string
	timeout time.Duration

	metrics *Metrics

	mu      sync.RWMutex // guards closing queue against settle sending on it
	closed  bool
	queue   chan settleJob
	pending sync.WaitGroup
	done    chan struct{}
}

var _ Store = (*RedisStore)(nil)

type settleJob struct {
	keys []string
	args []any
}

// NewRedisStore connects lazily (the first command dials) and starts the
// settlement sender; Close stops it.
func NewRedisStore(o RedisOptions) (*RedisStore, error) {
	if o.Addr == "" {
		return nil, errors.New("quota: redis address is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultRedisTimeout
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "igw:quota:"
	}
	ro := &redis.Options{
		Addr:                  o.Addr,
		Username:              o.Username,
		Password:              o.Password,
		DB:                    o.DB,
		DialTimeout:           o.Timeout,
		ReadTimeout:           o.Timeout,
		WriteTimeout:          o.Timeout,
		PoolTimeout:           o.Timeout,
		ContextTimeoutEnabled: true,
		// A failed call is not retried here: the failure mode decides
		// what happens, fast.
		MaxRetries: -1,
		PoolSize:   o.PoolSize,
		// RESP2 without CLIENT SETINFO: a new connection sends no HELLO
		// or SETINFO first, so even the first admission on it is one
		// round trip (plus the one-time EVAL after NOSCRIPT).
		DisableIdentity: true,
		Protocol:        2,
	}
	if o.Dialer != nil {
		ro.Dialer = o.Dialer
	}
	s := &RedisStore{
		client:  redis.NewClient(ro),
		prefix:  o.KeyPrefix,
		timeout: o.Timeout,
		metrics: o.Metrics,
		queue:   make(chan settleJob, settleQueue),
		done:    make(chan struct{}),
	}
	go s.sendSettlements()
	return s, nil
}

// Close sends the queued settlements (for at most the timeout) and closes
// the connections.
func (s *RedisStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	s.mu.Unlock()
	<-s.done
	return s.client.Close()
}

// Ping checks that Redis answers (the Failover's health probe).
func (s *RedisStore) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.client.Ping(ctx).Err()
}

// Flush waits until every settlement queued so far has been sent (or has
// failed).
func (s *RedisStore) Flush() { s.pending.Wait() }

// key is the Redis key of one counter. The parts are length-prefixed, so
// no key, tenant or model name can make two counters share a key.
func (s *RedisStore) key(ch *charge) string {
	var b strings.Builder
	b.Grow(len(s.prefix) + len(ch.limit.Name) + len(ch.sub.key) + len(ch.sub.tenant) + len(ch.sub.model) + 16)
	b.WriteString(s.prefix)
	b.WriteString(ch.limit.Name)
	for _, part := range [3]string{ch.sub.key, ch.sub.tenant, ch.sub.model} {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(len(part)))
		b.WriteByte(':')
		b.WriteString(part)
	}
	return b.String()
}

func (s *RedisStore) admit(ctx context.Context, now time.Time, charges []charge, out []Usage) (Ticket, bool, error) {
	nowMs := now.UnixMilli()
	keys := make([]string, len(charges))
	args := make([]any, 1, 1+4*len(charges))
	args[0] = nowMs
	for i := range charges {
		ch := &charges[i]
		keys[i] = s.key(ch)
		args = append(args, ch.limit.Window.Width().Milliseconds(), ch.limit.Window.Buckets+1, ch.limit.Max, ch.n)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := admitScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err != nil {
		return Ticket{}, false, fmt.Errorf("quota: redis admit: %w", err)
	}
	if len(res) != 1+4*len(charges) {
		return Ticket{}, false, fmt.Errorf("quota: redis admit: %d values in the reply, want %d", len(res), 1+4*len(charges))
	}
	ok := res[0] == 1
	for i := range charges {
		r := res[1+4*i:]
		out[i] = Usage{Limit: charges[i].limit, Max: charges[i].limit.Max, Used: r[0],
			ResetIn: time.Duration(r[1]) * time.Millisecond, RetryIn: time.Duration(r[2]) * time.Millisecond, Exhausted: r[3] == 1}
	}
	if !ok {
		return Ticket{}, false, nil
	}
	return Ticket{store: s, charges: charges, atMs: nowMs}, true, nil
}

// settle queues the correction; it is sent in the background. The job
// copies what it needs, since the caller reuses the ticket's memory.
func (s *RedisStore) settle(ctx context.Context, now time.Time, t *Ticket, delta []int64) error {
	job := settleJob{args: []any{now.UnixMilli()}}
	for i := range t.charges {
		if delta[i] == 0 {
			continue
		}
		ch := &t.charges[i]
		w := ch.limit.Window
		wms := w.Width().Milliseconds()
		job.keys = append(job.keys, s.key(ch))
		job.args = append(job.args, wms, w.Buckets+1, bucketOf(t.atMs, wms), delta[i])
	}
	if len(job.keys) == 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errors.New("quota: redis store closed")
	}
	s.pending.Add(1)
	select {
	case s.queue <- job:
		return nil
	default:
		defer s.pending.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		if err := settleScript.Run(ctx, s.client, job.keys, job.args...).Err(); err != nil {
			return fmt.Errorf("quota: redis settle: %w", err)
		}
		return nil
	}
}

// sendSettlements drains the queue, sending what has gathered (up to
// settleBatch) in one pipeline.
func (s *RedisStore) sendSettlements() {
	defer close(s.done)
	batch := make([]settleJob, 0, settleBatch)
	for job := range s.queue {
		batch = append(batch[:0], job)
	gather:
		for len(batch) < settleBatch {
			select {
			case j, ok := <-s.queue:
				if !ok {
					break gather
				}
				batch = append(batch, j)
			default:
				break gather
			}
		}
		s.sendBatch(batch)
		for range batch {
			s.pending.Done()
		}
	}
}

func (s *RedisStore) sendBatch(batch []settleJob) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	cmds, err := s.pipelineSettle(ctx, batch, false)
	if err == nil {
		return
	}
	defer func() { s.metrics.storeError("settle", err) }()
	// After a Redis restart the script is gone: load it with EVAL once
	// for the jobs that hit NOSCRIPT.
	var retry []settleJob
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			retry = append(retry, batch[i])
		}
	}
	if len(retry) == len(cmds) {
		_, err = s.pipelineSettle(ctx, retry, true)
	} else if len(retry) > 0 {
		_, _ = s.pipelineSettle(ctx, retry, true)
	}
}

func (s *RedisStore) pipelineSettle(ctx context.Context, batch []settleJob, eval bool) ([]redis.Cmder, error) {
	return s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, j := range batch {
			if eval {
				settleScript.Eval(ctx, p, j.keys, j.args...)
			} else {
				settleScript.EvalSha(ctx, p, j.keys, j.args...)
			}
		}
		return nil
	})
}
