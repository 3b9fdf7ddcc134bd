package kvevents

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/igw-dev/igw/pkg/datastore"
)

// DefaultPort is vLLM's default KV-events port (its --kv-events-config
// endpoint tcp://*:5557).
const DefaultPort = 5557

// DefaultAddress is where ep publishes its KV-cache events: the
// datastore.KVEventsEndpointLabel label, else the endpoint's host with the
// datastore.KVEventsPortLabel label's port (a static ModelServer's
// spec.kvEventsPort), else with DefaultPort.
func DefaultAddress(ep *datastore.Endpoint) (string, bool) {
	if a := ep.Labels[datastore.KVEventsEndpointLabel]; a != "" {
		return a, true
	}
	host, _, err := net.SplitHostPort(ep.Address)
	if err != nil {
		return "", false
	}
	port := strconv.Itoa(DefaultPort)
	if p := ep.Labels[datastore.KVEventsPortLabel]; p != "" {
		port = p
	}
	return "tcp://" + net.JoinHostPort(host, port), true
}

// Options configure a Subscriber.
type Options struct {
	// Index receives every endpoint's events. Required.
	Index *Index
	// Address says where an endpoint publishes (DefaultAddress when nil);
	// false skips the endpoint.
	Address func(*datastore.Endpoint) (string, bool)
	// Topic is the topic prefix subscribed to; "kv@" when empty (the
	// convention kv@<pod>@<model>).
	Topic string
	// Limits bound the decoder (DefaultLimits' for zero fields).
	Limits Limits
	// MaxPayload is the largest payload decoded, in bytes (16 MiB when 0);
	// a larger one counts as lost.
	MaxPayload int
	// Retry is the pause before redialling a publisher that went away
	// (1s when 0).
	Retry time.Duration
	// Log receives connection changes and gaps (discarded when nil).
	Log *slog.Logger
}

// Stats count what one endpoint's subscription saw.
type Stats struct {
	// Batches were applied; Gaps are jumps forward in the sequence (or
	// lost connections); Restarts are sequences that went backwards (a
	// publisher restarted); Malformed payloads were not applied.
	Batches, Gaps, Restarts, Malformed uint64
	// Evicted counts the blocks BlockRemoved events named.
	Evicted uint64
}

// Subscriber keeps one ZeroMQ SUB subscription per endpoint and applies
// each endpoint's events to the Index in the order they were published.
// Like the metrics scraper, it is level-based: SetEndpoints hands it the
// whole endpoint set; Run starts subscriptions for new endpoints and stops
// those of endpoints that left, dropping their entries from the index.
type Subscriber struct {
	opts Options

	mu       sync.Mutex
	desired  []*datastore.Endpoint
	inactive bool // SetActive(false): subscribe to nothing
	wake     chan struct{}
	stats    map[string]*endpointStats

	running atomic.Bool
}

type endpointStats struct {
	batches, gaps, restarts, malformed, evicted atomic.Uint64
}

// NewSubscriber validates opts.
func NewSubscriber(opts Options) (*Subscriber, error) {
	if opts.Index == nil {
		return nil, errors.New("kvevents: Options.Index is required")
	}
	if opts.Address == nil {
		opts.Address = DefaultAddress
	}
	if opts.Topic == "" {
		opts.Topic = "kv@"
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = 16 << 20
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Subscriber{opts: opts, wake: make(chan struct{}, 1), stats: map[string]*endpointStats{}}, nil
}

// SetEndpoints replaces the set of endpoints to subscribe to. It never
// blocks and may be called before Run.
func (s *Subscriber) SetEndpoints(eps []*datastore.Endpoint) {
	s.mu.Lock()
	s.desired = append(s.desired[:0:0], eps...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// SetActive turns subscribing on (the default) or off while keeping the
// endpoint set, so a composition root can feed SetEndpoints on every change
// and decide separately whether anyone reads the index. Off closes every
// subscription and forgets its entries.
func (s *Subscriber) SetActive(active bool) {
	s.mu.Lock()
	s.inactive = !active
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stats reports what the subscription of the endpoint with address addr
// (Endpoint.Address, the index's key) saw.
func (s *Subscriber) Stats(addr string) Stats {
	s.mu.Lock()
	st := s.stats[addr]
	s.mu.Unlock()
	if st == nil {
		return Stats{}
	}
	return Stats{Batches: st.batches.Load(), Gaps: st.gaps.Load(), Restarts: st.restarts.Load(), Malformed: st.malformed.Load(), Evicted: st.evicted.Load()}
}

// Run subscribes until ctx is done, then closes every subscription and
// returns nil once they have all stopped.
func (s *Subscriber) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("kvevents: Subscriber.Run called while already running")
	}
	defer s.running.Store(false)
	type loop struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	loops := map[string]loop{} // by Endpoint.Address
	stop := func(key string, l loop) {
		l.cancel()
		<-l.done
		delete(loops, key)
		// Only once its loop has stopped can nothing re-add its entries.
		s.opts.Index.Forget(key)
		s.mu.Lock()
		delete(s.stats, key)
		s.mu.Unlock()
	}
	defer func() {
		for key, l := range loops {
			stop(key, l)
		}
	}()
	for {
		s.mu.Lock()
		desired := map[string]string{}
		for _, ep := range s.desired {
			if ep == nil || s.inactive {
				continue
			}
			if addr, ok := s.opts.Address(ep); ok {
				desired[ep.Address] = addr
			}
		}
		s.mu.Unlock()
		for key, l := range loops {
			if _, ok := desired[key]; !ok {
				stop(key, l)
			}
		}
		for key, addr := range desired {
			if _, ok := loops[key]; ok {
				continue
			}
			lctx, cancel := context.WithCancel(ctx)
			l := loop{cancel: cancel, done: make(chan struct{})}
			loops[key] = l
			st := &endpointStats{}
			s.mu.Lock()
			s.stats[key] = st
			s.mu.Unlock()
			go func() {
				defer close(l.done)
				s.runEndpoint(lctx, key, addr, st)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

// stream is one endpoint's position in its publisher's sequence.
type stream struct {
	started bool
	next    uint64
}

// runEndpoint subscribes to one publisher, redialling when it goes away.
func (s *Subscriber) runEndpoint(ctx context.Context, key, addr string, st *endpointStats) {
	log := s.opts.Log.With("endpoint", key, "kv_events", addr)
	dec := NewDecoder(s.opts.Limits)
	var seq stream
	for ctx.Err() == nil {
		err := s.consume(ctx, key, addr, dec, &seq, st)
		if ctx.Err() != nil {
			return
		}
		// Whatever the publisher sent while we were away is lost to us.
		if seq.started {
			s.opts.Index.MarkGap(key)
			st.gaps.Add(1)
		}
		log.Warn("kv events subscription lost; redialling", "err", err, "retry", s.opts.Retry)
		t := time.NewTimer(s.opts.Retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *Subscriber) consume(ctx context.Context, key, addr string, dec *Decoder, seq *stream, st *endpointStats) error {
	sock := zmq4.NewSub(ctx, zmq4.WithDialerRetry(s.opts.Retry/4+time.Millisecond), zmq4.WithDialerMaxRetries(4))
	defer sock.Close()
	if err := sock.SetOption(zmq4.OptionSubscribe, s.opts.Topic); err != nil {
		return fmt.Errorf("subscribe %q: %w", s.opts.Topic, err)
	}
	if err := sock.Dial(addr); err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	for {
		msg, err := sock.Recv()
		if err != nil {
			return fmt.Errorf("receive from %s: %w", addr, err)
		}
		s.handle(key, msg.Frames, dec, seq, st)
	}
}

// handle applies one message: [topic, sequence (8 bytes, big-endian),
// payload]. The sequence decides what the index may still trust.
func (s *Subscriber) handle(key string, frames [][]byte, dec *Decoder, seq *stream, st *endpointStats) {
	ix := s.opts.Index
	if len(frames) != 3 || len(frames[1]) != 8 {
		st.malformed.Add(1)
		ix.MarkGap(key)
		return
	}
	n := binary.BigEndian.Uint64(frames[1])
	switch {
	case !seq.started || n == seq.next:
	case n > seq.next:
		st.gaps.Add(1)
		ix.MarkGap(key)
	default:
		// The sequence went back: a new publisher, so a new engine whose
		// cache started empty. Nothing the index holds is true any more.
		st.restarts.Add(1)
		ix.Clear(key)
	}
	seq.started, seq.next = true, n+1
	if len(frames[2]) > s.opts.MaxPayload {
		st.malformed.Add(1)
		ix.MarkGap(key)
		return
	}
	b, err := dec.Decode(frames[2])
	if err != nil {
		st.malformed.Add(1)
		ix.MarkGap(key)
		s.opts.Log.Warn("kv events: undecodable batch", "endpoint", key, "seq", n, "err", err)
		return
	}
	ix.Apply(key, b.Events)
	st.batches.Add(1)
	for i := range b.Events {
		if b.Events[i].Kind == KindBlockRemoved {
			st.evicted.Add(uint64(len(b.Events[i].BlockHashes)))
		}
	}
}
