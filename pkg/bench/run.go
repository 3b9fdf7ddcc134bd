package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Options bound and shape one run.
type Options struct {
	// Stages is the load ladder, run in order.
	Stages []Stage
	// Warmup runs the first stage's load for this long before the measured
	// stages; its requests warm caches and connection pools and are left
	// out of every summary.
	Warmup time.Duration
	// MaxDuration cuts the run (warm-up included) short; 0 means the sum of
	// the stages.
	MaxDuration time.Duration
	// MaxRequests stops sending after this many requests (warm-up
	// included); 0 means no limit.
	MaxRequests int
	// Seed seeds the arrival processes.
	Seed int64
	// RequestTimeout bounds each request; 0 means none.
	RequestTimeout time.Duration
	// DrainTimeout is how long the run waits for requests still in flight
	// once sending stops; the rest are cancelled (ErrCanceled). 0 means 60s.
	DrainTimeout time.Duration
	// MaxInFlight caps open requests of open-loop stages; an arrival beyond
	// it is recorded as ErrDropped instead of being sent, so an overloaded
	// target cannot exhaust the load generator. 0 means 10000.
	MaxInFlight int
	// OnResult, if set, sees every result as it completes (for a progress
	// line). Calls are serialized and must return quickly.
	OnResult func(RequestResult)
}

func (o *Options) validate() error {
	var errs []error
	if len(o.Stages) == 0 {
		errs = append(errs, errors.New("stages: at least one stage is required"))
	}
	for i, s := range o.Stages {
		errs = append(errs, s.validate(fmt.Sprintf("stages[%d]", i))...)
	}
	if o.Warmup < 0 {
		errs = append(errs, errors.New("warmup: must not be negative"))
	}
	if o.MaxDuration < 0 {
		errs = append(errs, errors.New("max_duration: must not be negative"))
	}
	if o.MaxRequests < 0 {
		errs = append(errs, errors.New("max_requests: must not be negative"))
	}
	if o.RequestTimeout < 0 {
		errs = append(errs, errors.New("request_timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// RunResult is everything a run measured: per-stage and total summaries
// for reports, and every request for re-analysis.
type RunResult struct {
	// Target is the base URL the run was sent to.
	Target string `json:"target"`
	// Seed is the arrival processes' seed, to rerun the same arrivals.
	Seed int64 `json:"seed"`
	// StartedAt is the wall-clock time of offset 0.
	StartedAt time.Time `json:"started_at"`
	// Elapsed is the run's wall time, drain included.
	Elapsed Duration `json:"elapsed"`
	// Interrupted is set when the context was cancelled before the plan
	// ended.
	Interrupted bool `json:"interrupted,omitempty"`
	// Windows is the plan that was followed (see Plan).
	Windows []Window `json:"windows"`
	// Stages summarizes each measured stage that ran, in order.
	Stages []Summary `json:"stages"`
	// Total summarizes all measured stages together.
	Total Summary `json:"total"`
	// Requests are all results in arrival order, warm-up included.
	Requests []RequestResult `json:"requests,omitempty"`
}

// Run sends src's requests through c according to o and summarizes them.
// It returns when the plan has run and in-flight requests have drained
// (or DrainTimeout has passed). Cancelling ctx stops sending and cancels
// in-flight requests at once; Run then returns what it measured, with
// Interrupted set, together with the context's error.
func Run(ctx context.Context, c *Client, src Source, o Options) (*RunResult, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 60 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 10000
	}
	r := &runner{c: c, src: src, o: o, windows: Plan(o)}
	reqCtx, cancelReqs := context.WithCancel(ctx)
	defer cancelReqs()
	r.reqCtx = reqCtx

	r.epoch = time.Now()
	res := &RunResult{Target: c.base, Seed: o.Seed, StartedAt: r.epoch, Windows: r.windows}
	r.dispatch(ctx)

	drained := make(chan struct{})
	go func() { r.wg.Wait(); close(drained) }()
	drain := time.NewTimer(o.DrainTimeout)
	select {
	case <-drained:
	case <-drain.C:
		cancelReqs()
		<-drained
	case <-ctx.Done():
		<-drained // in-flight requests share ctx and end at once
	}
	drain.Stop()

	res.Elapsed = Duration{time.Since(r.epoch)}
	res.Interrupted = ctx.Err() != nil
	r.mu.Lock()
	res.Requests = r.results
	r.mu.Unlock()
	sortByID(res.Requests)
	res.Stages, res.Total = SummarizeRun(res.Requests, res.Windows)
	if ctx.Err() != nil {
		return res, fmt.Errorf("bench: run interrupted: %w", ctx.Err())
	}
	return res, nil
}

type runner struct {
	c       *Client
	src     Source
	o       Options
	windows []Window
	epoch   time.Time
	reqCtx  context.Context

	sent     atomic.Int64 // requests taken from the source, for IDs and MaxRequests
	inFlight atomic.Int64
	wg       sync.WaitGroup

	mu      sync.Mutex
	results []RequestResult
}

// dispatch follows the plan until it ends, MaxRequests is reached or ctx
// is cancelled.
func (r *runner) dispatch(ctx context.Context) {
	for i, w := range r.windows {
		if ctx.Err() != nil || r.exhausted() {
			return
		}
		if w.Concurrency > 0 {
			r.closedLoop(ctx, w)
		} else {
			r.openLoop(ctx, w, uint64(i))
		}
	}
}

func (r *runner) exhausted() bool {
	return r.o.MaxRequests > 0 && r.sent.Load() >= int64(r.o.MaxRequests)
}

// take claims the next request ID, or reports that MaxRequests is used up.
func (r *runner) take() (int64, bool) {
	id := r.sent.Add(1) - 1
	if r.o.MaxRequests > 0 && id >= int64(r.o.MaxRequests) {
		return 0, false
	}
	return id, true
}

// sleepUntil waits until offset at from the epoch; false if ctx ended.
func (r *runner) sleepUntil(ctx context.Context, t *time.Timer, at time.Duration) bool {
	d := time.Until(r.epoch.Add(at))
	if d <= 0 {
		return ctx.Err() == nil
	}
	t.Reset(d)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		if !t.Stop() {
			<-t.C
		}
		return false
	}
}

// openLoop sends requests at the window's Poisson arrival times without
// waiting for answers.
func (r *runner) openLoop(ctx context.Context, w Window, stream uint64) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for _, at := range PoissonArrivals(r.o.Seed, stream, w.QPS, w.Start, w.End) {
		if !r.sleepUntil(ctx, timer, at) {
			return
		}
		id, ok := r.take()
		if !ok {
			return
		}
		req := r.src.Next()
		if r.inFlight.Load() >= int64(r.o.MaxInFlight) {
			res := RequestResult{ID: id, Stage: w.Stage, Warmup: w.Warmup, Group: req.Group, Turn: req.Turn,
				Model: req.Model, Objective: req.Objective, FairnessID: req.FairnessID, SLOTTFTMs: int(req.TTFTObjective.Milliseconds()),
				Scheduled: at, Start: time.Since(r.epoch), ErrorKind: ErrDropped, Error: "client at max in-flight"}
			res.End = res.Start
			r.src.Complete(req, &res, "")
			r.record(res)
			continue
		}
		r.inFlight.Add(1)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.inFlight.Add(-1)
			r.send(id, w, at, req)
		}()
	}
	// Hold the plan's pace: the next window starts at its own time even if
	// this one's last arrival came early.
	r.sleepUntil(ctx, timer, w.End)
}

// closedLoop runs w.Concurrency workers that each send one request after
// another until the window ends; requests still open at the end finish in
// the background while the next window starts.
func (r *runner) closedLoop(ctx context.Context, w Window) {
	var workers sync.WaitGroup
	for range w.Concurrency {
		r.wg.Add(1)
		workers.Add(1)
		go func() {
			defer r.wg.Done()
			defer workers.Done()
			for ctx.Err() == nil {
				at := time.Since(r.epoch)
				if at >= w.End {
					return
				}
				id, ok := r.take()
				if !ok {
					return
				}
				r.inFlight.Add(1)
				r.send(id, w, at, r.src.Next())
				r.inFlight.Add(-1)
			}
		}()
	}
	// Workers all gone before the window ends means MaxRequests ran out
	// (or ctx ended): nothing more will be sent, so stop waiting.
	allGone := make(chan struct{})
	go func() { workers.Wait(); close(allGone) }()
	timer := time.NewTimer(time.Until(r.epoch.Add(w.End)))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-allGone:
	case <-ctx.Done():
	}
}

// send runs one request and records it.
func (r *runner) send(id int64, w Window, at time.Duration, req *Request) {
	ctx := r.reqCtx
	if r.o.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.o.RequestTimeout, errRequestTimeout)
		defer cancel()
	}
	res, answer := r.c.Send(ctx, req, r.epoch)
	res.ID, res.Stage, res.Warmup, res.Scheduled = id, w.Stage, w.Warmup, at
	r.src.Complete(req, &res, answer)
	r.record(res)
}

func (r *runner) record(res RequestResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, res)
	if r.o.OnResult != nil {
		r.o.OnResult(res)
	}
}
