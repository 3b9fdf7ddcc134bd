package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/igw-dev/igw/pkg/tokenizer"
)

// Fleet is a set of independent simulated replicas in one process, each
// with its own engine, KV cache, metrics and HTTP listener, on consecutive
// ports from cfg.Port (or on ephemeral ports when cfg.Port is 0).
type Fleet struct {
	servers   []*Server
	listeners []net.Listener
	https     []*http.Server
	addrs     []string
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// StartFleet listens on every replica's port and starts serving. It fails
// without leaving anything running if any port cannot be bound.
func StartFleet(cfg Config, log *slog.Logger) (*Fleet, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ephemeral := cfg.Port == 0
	if ephemeral {
		cfg.Port = 1 // only for validation: each replica binds port 0
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	v := newVocab()
	var tok *tokenizer.Tokenizer
	if cfg.Tokenizer != "" {
		var err error
		// The engine tokenizes whole prompts: no byte limit below the
		// request body's.
		if tok, err = tokenizer.Load(cfg.Tokenizer, tokenizer.Options{MaxPromptBytes: maxRequestBody}); err != nil {
			return nil, fmt.Errorf("sim: --tokenizer: %w", err)
		}
	}
	f := &Fleet{}
	for i := range cfg.Replicas {
		port := 0
		if !ephemeral {
			port = cfg.Port + i
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Address, strconv.Itoa(port)))
		if err != nil {
			f.closeListeners()
			return nil, fmt.Errorf("sim replica %d: %w", i, err)
		}
		rc := cfg
		rc.Port = ln.Addr().(*net.TCPAddr).Port
		srv, err := NewServer(rc, i, v)
		if err == nil {
			srv.tok = tok
		}
		if err == nil && cfg.KVEvents.Enabled() {
			var p *kvPublisher
			if p, err = newKVPublisher(rc, i, ln.Addr().String(), log); err == nil {
				srv.attachKVEvents(p)
			}
		}
		if err != nil {
			_ = ln.Close()
			f.closeListeners()
			f.closePublishers()
			return nil, err
		}
		f.servers = append(f.servers, srv)
		f.listeners = append(f.listeners, ln)
		f.addrs = append(f.addrs, ln.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for i, srv := range f.servers {
		hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
		f.https = append(f.https, hs)
		f.wg.Add(2)
		go func() { defer f.wg.Done(); srv.Run(ctx) }()
		go func(ln net.Listener) {
			defer f.wg.Done()
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("sim replica stopped serving", "replica", i, "err", err)
			}
		}(f.listeners[i])
	}
	log.Info("simulated model servers ready", "replicas", len(f.addrs), "model", cfg.ServedName(), "engine", cfg.Engine, "addresses", f.addrs)
	return f, nil
}

// Addrs are the replicas' host:port addresses, in replica order.
func (f *Fleet) Addrs() []string { return f.addrs }

// Servers are the replicas, in the order of Addrs.
func (f *Fleet) Servers() []*Server { return f.servers }

// Close stops every replica: in-flight requests end with an error and the
// listeners close. It waits up to the context's deadline for handlers.
func (f *Fleet) Close(ctx context.Context) error {
	f.cancel()
	var errs []error
	for _, hs := range f.https {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			_ = hs.Close()
		}
	}
	f.wg.Wait()
	errs = append(errs, f.closePublishers())
	return errors.Join(errs...)
}

// closePublishers stops the replicas' KV-event publishers once their
// engines are stopped.
func (f *Fleet) closePublishers() error {
	var errs []error
	for _, srv := range f.servers {
		if srv.kv != nil {
			srv.engine.setEventSink(nil)
			errs = append(errs, srv.kv.close())
		}
	}
	return errors.Join(errs...)
}

func (f *Fleet) closeListeners() {
	for _, ln := range f.listeners {
		_ = ln.Close()
	}
}
