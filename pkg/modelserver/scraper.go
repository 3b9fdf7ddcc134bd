package modelserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/openai"
)

// Defaults of Options, exported so that flags and configuration can show
// them.
const (
	// DefaultInterval is the scrape period of REFERENCE §4: short enough
	// that a queue building up is seen within a few requests.
	DefaultInterval = 50 * time.Millisecond
	// DefaultHealthInterval is the /health period: readiness changes rarely
	// and a failing scrape already marks an endpoint not ready sooner.
	DefaultHealthInterval = time.Second
	// DefaultTimeout bounds one scrape or health request, so a hung server
	// costs a failure instead of a stuck loop.
	DefaultTimeout = time.Second
	// DefaultFailureThreshold is how many consecutive failed scrapes mark an
	// endpoint not ready: one lost scrape is noise, three are a dead server.
	DefaultFailureThreshold = 3
	// DefaultMaxBodyBytes bounds a /metrics page so a broken server cannot
	// make the gateway buffer without limit.
	DefaultMaxBodyBytes = 8 << 20
)

// Options configures a Scraper. The zero value of every field means its
// default, so Options{} is a working production configuration.
type Options struct {
	// Client sends every request. Nil means NewHTTPClient(): keep-alive
	// connections, no proxy from the environment.
	Client *http.Client
	// Interval between the starts of two scrapes of one endpoint.
	Interval time.Duration
	// HealthInterval between two /health checks of one endpoint.
	HealthInterval time.Duration
	// Timeout of one scrape or health request.
	Timeout time.Duration
	// FailureThreshold consecutive scrape failures mark an endpoint not
	// ready until a scrape succeeds again. A refused connection counts as
	// enough failures at once: nothing listens any more.
	FailureThreshold int
	// MetricsPath and HealthPath default to "/metrics" and "/health".
	MetricsPath, HealthPath string
	// ModelsPath is the OpenAI model list (default "/v1/models"), read
	// after every successful health check: it is the only place a server
	// tells which LoRA adapters it has loaded while they are idle. "-"
	// disables it.
	ModelsPath string
	// MaxBodyBytes bounds a /metrics response; larger pages fail the scrape.
	MaxBodyBytes int64
	// Logger receives scrape failures and recoveries (once per change, not
	// once per scrape). Nil discards.
	Logger *slog.Logger
	// Now stamps Metrics.UpdateTime. Nil means time.Now; tests replace it.
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.Interval < 0 || o.HealthInterval < 0 || o.Timeout < 0 || o.FailureThreshold < 0 || o.MaxBodyBytes < 0 {
		return o, errors.New("modelserver: negative scraper option")
	}
	if o.Client == nil {
		o.Client = NewHTTPClient()
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FailureThreshold == 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.MetricsPath == "" {
		o.MetricsPath = "/metrics"
	}
	if o.ModelsPath == "" {
		o.ModelsPath = "/v1/models"
	}
	if o.HealthPath == "" {
		o.HealthPath = "/health"
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// NewHTTPClient returns the client a Scraper uses by default. Scrapes hit
// the same few hosts 20 times a second, so connections are kept alive and
// enough idle ones are kept per host for the scrape and health loops; the
// environment's HTTP proxy is ignored because model servers are reached
// directly; compression is off because on a cluster network decoding costs
// more than the bytes it saves. Timeouts come from each request's context.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: (&net.Dialer{
				Timeout:   time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:        0, // no global cap: one or two per endpoint
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Scraper keeps the metrics and readiness of a changing set of endpoints
// current. It runs one scrape loop and one health loop per endpoint, so a
// slow server delays only its own snapshot. Discovery hands it the whole
// endpoint set whenever it changes (SetEndpoints); Run makes the running
// loops match that set, level-based, like a reconciler.
type Scraper struct {
	opts Options

	mu      sync.Mutex
	desired []*datastore.Endpoint
	wake    chan struct{} // capacity 1: "desired changed"

	running atomic.Bool
	loops   atomic.Int64 // endpoint loops alive; observed by tests
}

// NewScraper validates opts and returns a Scraper that scrapes nothing
// until it is given endpoints and Run.
func NewScraper(opts Options) (*Scraper, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Scraper{opts: o, wake: make(chan struct{}, 1)}, nil
}

// SetEndpoints replaces the set of endpoints to scrape. Endpoints are
// identified by pointer: a new *Endpoint for the same address is a new
// endpoint. Loops of endpoints no longer in the set stop promptly (their
// in-flight request is cancelled); their last metrics and readiness are left
// as they were. It never blocks on Run and may be called before Run starts.
func (s *Scraper) SetEndpoints(eps []*datastore.Endpoint) {
	s.mu.Lock()
	s.desired = append(s.desired[:0:0], eps...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run scrapes the endpoints of the latest SetEndpoints until ctx is done,
// then stops every loop and returns nil once they have all exited. It is
// the scraper's only goroutine owner, so cancelling ctx is the way to stop
// it. Calling Run while another Run is active is an error.
func (s *Scraper) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("modelserver: Scraper.Run called while already running")
	}
	defer s.running.Store(false)

	var wg sync.WaitGroup
	loops := make(map[*datastore.Endpoint]context.CancelFunc)
	defer func() {
		for _, cancel := range loops {
			cancel()
		}
		wg.Wait()
	}()
	for {
		s.reconcile(ctx, loops, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

// reconcile starts a loop for every desired endpoint without one and stops
// the loops of endpoints no longer desired.
func (s *Scraper) reconcile(ctx context.Context, loops map[*datastore.Endpoint]context.CancelFunc, wg *sync.WaitGroup) {
	s.mu.Lock()
	desired := make(map[*datastore.Endpoint]struct{}, len(s.desired))
	for _, ep := range s.desired {
		if ep != nil {
			desired[ep] = struct{}{}
		}
	}
	s.mu.Unlock()

	for ep, cancel := range loops {
		if _, ok := desired[ep]; !ok {
			cancel()
			delete(loops, ep)
		}
	}
	for ep := range desired {
		if _, ok := loops[ep]; ok {
			continue
		}
		epCtx, cancel := context.WithCancel(ctx)
		loops[ep] = cancel
		wg.Add(1)
		s.loops.Add(1)
		go func() {
			defer wg.Done()
			defer s.loops.Add(-1)
			s.runEndpoint(epCtx, ep)
		}()
	}
}

// endpointState combines the two signals readiness depends on. The mutex
// makes "update a signal, recompute, publish" atomic, so the scrape and
// health loops cannot publish readiness out of order.
type endpointState struct {
	ep        *datastore.Endpoint
	threshold int

	mu       sync.Mutex
	healthy  bool
	failures int
}

func (st *endpointState) update(change func()) {
	st.mu.Lock()
	defer st.mu.Unlock()
	change()
	st.ep.SetReady(st.healthy && st.failures < st.threshold)
}

func (s *Scraper) runEndpoint(ctx context.Context, ep *datastore.Endpoint) {
	log := s.opts.Logger.With("endpoint", ep.Name, "address", ep.Address, "engine", string(ep.Engine))
	parser, err := NewParser(ep.Engine)
	if err != nil {
		log.Error("endpoint will not be scraped", "err", err)
		ep.SetReady(false)
		return
	}
	st := &endpointState{ep: ep, threshold: s.opts.FailureThreshold}

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.healthLoop(ctx, st, log)
	}()
	s.scrapeLoop(ctx, st, parser, log)
	<-done
}

func (s *Scraper) scrapeLoop(ctx context.Context, st *endpointState, parser *Parser, log *slog.Logger) {
	url := "http://" + st.ep.Address + s.opts.MetricsPath
	var body bytes.Buffer
	var lastErr error
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	for {
		m, err := s.scrape(ctx, url, parser, &body)
		if ctx.Err() != nil {
			return // removed or shutting down: the failure is ours, not the server's
		}
		if err == nil {
			st.ep.SetMetrics(m)
			st.update(func() { st.failures = 0 })
			if lastErr != nil {
				log.Info("scrape recovered")
			}
		} else {
			if lastErr == nil {
				log.Warn("scrape failed", "err", err)
			}
			refused := errors.Is(err, syscall.ECONNREFUSED)
			st.update(func() {
				st.failures++
				if refused {
					// Nothing listens: the server is gone, no need to
					// wait for more evidence (DESIGN: a dead endpoint
					// leaves the candidate set within one interval).
					st.failures = max(st.failures, st.threshold)
				}
			})
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// scrape fetches and parses one page; the returned snapshot is stamped with
// the completion time and ready to publish.
func (s *Scraper) scrape(ctx context.Context, url string, parser *Parser, body *bytes.Buffer) (*datastore.Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("modelserver: scrape %s: %w", url, err)
	}
	// Ask for the classic text format, which every engine serves.
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("modelserver: scrape: %w", err)
	}
	defer closeBody(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("modelserver: scrape %s: status %s", url, resp.Status)
	}
	body.Reset()
	n, err := body.ReadFrom(io.LimitReader(resp.Body, s.opts.MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("modelserver: scrape %s: read body: %w", url, err)
	}
	if n > s.opts.MaxBodyBytes {
		return nil, fmt.Errorf("modelserver: scrape %s: page larger than %d bytes", url, s.opts.MaxBodyBytes)
	}
	m, err := parser.Parse(body.Bytes())
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	m.UpdateTime = s.opts.Now()
	return m, nil
}

func (s *Scraper) healthLoop(ctx context.Context, st *endpointState, log *slog.Logger) {
	url := "http://" + st.ep.Address + s.opts.HealthPath
	tick := time.NewTicker(s.opts.HealthInterval)
	defer tick.Stop()
	first := true
	for {
		err := s.checkHealth(ctx, url)
		if ctx.Err() != nil {
			return
		}
		healthy := err == nil
		st.mu.Lock()
		changed := first || st.healthy != healthy
		st.mu.Unlock()
		if changed {
			if healthy {
				log.Info("endpoint healthy")
			} else {
				log.Warn("endpoint unhealthy", "err", err)
			}
		}
		first = false
		st.update(func() { st.healthy = healthy })
		if healthy && s.opts.ModelsPath != "-" {
			if models, err := s.fetchModels(ctx, "http://"+st.ep.Address+s.opts.ModelsPath); err == nil {
				if !slices.Equal(models, st.ep.ServedModels()) {
					st.ep.SetServedModels(models)
				}
			} else if ctx.Err() == nil {
				log.Debug("model list unavailable", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// checkHealth returns nil when the server answers its health route with 200.
func (s *Scraper) checkHealth(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("modelserver: health %s: %w", url, err)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("modelserver: health: %w", err)
	}
	defer closeBody(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("modelserver: health %s: status %s", url, resp.Status)
	}
	return nil
}

// fetchModels reads the ids of an OpenAI model list (base models and
// loaded adapters alike).
func (s *Scraper) fetchModels(ctx context.Context, url string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("modelserver: models %s: %w", url, err)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("modelserver: models: %w", err)
	}
	defer closeBody(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("modelserver: models %s: status %s", url, resp.Status)
	}
	var list openai.ModelList
	if err := json.NewDecoder(io.LimitReader(resp.Body, s.opts.MaxBodyBytes)).Decode(&list); err != nil {
		return nil, fmt.Errorf("modelserver: models %s: %w", url, err)
	}
	ids := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

// closeBody drains a little of what is left so the connection can be
// reused, then closes it.
func closeBody(b io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(b, 64<<10))
	_ = b.Close()
}
