package envoytest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
)

// Load is a stream of request phases played against a picker the way a
// busy Envoy plays them: many Process streams at once over one connection.
// It measures what a gateway waits for before it can route: from the
// request's start (its scheduled start, in an open loop) to the decision
// with the body echoed back.
type Load struct {
	// Conn is the connection to the picker.
	Conn grpc.ClientConnInterface
	// Request returns the i-th request; it is called from many goroutines.
	Request func(i int) *Request
	// Rate, when positive, starts requests at this many per second
	// whatever the picker's pace (an open loop: latency counts from each
	// request's scheduled start, so a slow picker cannot hide its queue).
	// Otherwise Concurrency workers each send the next request as soon as
	// theirs is decided (a closed loop, which measures throughput).
	Rate        float64
	Concurrency int
	// Duration bounds the run; MaxRequests, when positive, too.
	Duration    time.Duration
	MaxRequests int
	// MaxInFlight bounds an open loop's requests in flight (default
	// 10,000); past it, starts are counted as Dropped, not sent.
	MaxInFlight int
}

// LoadResult is what a Load saw.
type LoadResult struct {
	// Decided request phases ended with a routing decision; Rejected ones
	// with an ImmediateResponse; Failed ones with a stream error; Dropped
	// were never sent (open loop over MaxInFlight).
	Decided, Rejected, Failed, Dropped int
	// Elapsed is the wall time from the first start to the last answer.
	Elapsed time.Duration
	// Latencies are the decided request phases' latencies, in completion
	// order.
	Latencies []time.Duration
	// FirstError is the first stream error, for the operator to read.
	FirstError error
}

// Run plays the load until Duration (or MaxRequests) is reached or ctx
// ends, then waits for the requests in flight.
func (l *Load) Run(ctx context.Context) LoadResult {
	var (
		mu  sync.Mutex
		res LoadResult
	)
	record := func(lat time.Duration, r *Result, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			res.Failed++
			if res.FirstError == nil {
				res.FirstError = err
			}
		case r.Immediate != nil:
			res.Rejected++
		default:
			res.Decided++
			res.Latencies = append(res.Latencies, lat)
		}
	}
	one := func(i int, scheduled time.Time) {
		s, err := Start(ctx, l.Conn, l.Request(i))
		lat := time.Since(scheduled)
		if err == nil {
			// Envoy would now forward the request and play the response
			// phase; here the HTTP stream ends with the request phase.
			err = s.Close()
		}
		record(lat, s.Result(), err)
	}
	// A closed loop stops starting requests when the time is up; those in
	// flight finish (on ctx).
	starting, stop := context.WithTimeout(ctx, l.Duration)
	defer stop()
	var next atomic.Int64
	take := func() (int, bool) {
		i := int(next.Add(1) - 1)
		return i, starting.Err() == nil && (l.MaxRequests <= 0 || i < l.MaxRequests)
	}
	start := time.Now()
	var wg sync.WaitGroup
	if l.Rate > 0 {
		limit := l.MaxInFlight
		if limit <= 0 {
			limit = 10_000
		}
		sem := make(chan struct{}, limit)
		interval := time.Duration(float64(time.Second) / l.Rate)
		timer := time.NewTimer(0)
		defer timer.Stop()
		// The schedule, not the clock, ends an open loop: exactly
		// Rate × Duration starts, late ones included (their lateness is in
		// their latency).
		for i := 0; l.MaxRequests <= 0 || i < l.MaxRequests; i++ {
			scheduled := start.Add(time.Duration(i) * interval)
			if scheduled.Sub(start) >= l.Duration {
				break
			}
			if d := time.Until(scheduled); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				break
			}
			select {
			case sem <- struct{}{}:
			default:
				mu.Lock()
				res.Dropped++
				mu.Unlock()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				one(i, scheduled)
			}()
		}
	} else {
		workers := max(l.Concurrency, 1)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i, ok := take()
					if !ok {
						return
					}
					one(i, time.Now())
				}
			}()
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}
