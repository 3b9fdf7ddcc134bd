package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	v1 "github.com/igw-dev/igw/api/v1"
	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/telemetry"
)

// Annotations of an InferencePool that configure how igw serve reaches its
// remote picker (spec.endpointPickerRef). They are igw's, not part of the
// InferencePool API, which leaves transport details to the gateway.
const (
	// AnnotationPickerTLS is how the picker connection is secured:
	// "insecure-skip-verify" (the default: TLS without verifying the
	// certificate, matching the self-signed certificate pickers serve by
	// default with --secure-serving), "verify" (TLS verified against the
	// system roots) or "plaintext" (a picker run with
	// --secure-serving=false).
	AnnotationPickerTLS = "igw.dev/endpoint-picker-tls"
	// AnnotationPickerTimeout bounds the picker's answer to one request
	// (a Go duration, default extproc.DefaultClientTimeout). Past it the
	// pool's failureMode applies.
	AnnotationPickerTimeout = "igw.dev/endpoint-picker-timeout"

	pickerTLSSkipVerify = "insecure-skip-verify"
	pickerTLSVerify     = "verify"
	pickerTLSPlaintext  = "plaintext"

	// reasonPickerUnavailable is the dropped-request reason of a FailClose
	// pool whose picker cannot be reached.
	reasonPickerUnavailable = "endpoint-picker-unavailable"
)

// remoteSpec is a pool scheduled by a remote picker, resolved at load.
type remoteSpec struct {
	target   string // host:port to dial
	tls      string
	timeout  time.Duration
	failOpen bool
}

// remoteSpecOf resolves a pool's endpointPickerRef; nil when the pool uses
// the embedded Director. Standalone, there is no Service to resolve, so the
// ref's name is dialled as a host: an IP address or a DNS name (which
// config validation accepts as a DNS-1123 subdomain), with port.number.
func remoteSpecOf(p *v1.InferencePool) (*remoteSpec, error) {
	ref := p.Spec.EndpointPickerRef
	if ref == nil {
		return nil, nil
	}
	if ref.Port == nil {
		return nil, fmt.Errorf("inferencepool %s/%s: spec.endpointPickerRef.port is required to reach the picker", p.Namespace, p.Name)
	}
	rs := &remoteSpec{
		target:   net.JoinHostPort(string(ref.Name), strconv.Itoa(int(ref.Port.Number))),
		tls:      pickerTLSSkipVerify,
		timeout:  extproc.DefaultClientTimeout,
		failOpen: ref.FailureMode == v1.EndpointPickerFailOpen,
	}
	if v, ok := p.Annotations[AnnotationPickerTLS]; ok {
		switch v {
		case pickerTLSSkipVerify, pickerTLSVerify, pickerTLSPlaintext:
			rs.tls = v
		default:
			return nil, fmt.Errorf("inferencepool %s/%s: annotation %s must be %s, %s or %s, not %q",
				p.Namespace, p.Name, AnnotationPickerTLS, pickerTLSSkipVerify, pickerTLSVerify, pickerTLSPlaintext, v)
		}
	}
	if v, ok := p.Annotations[AnnotationPickerTimeout]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("inferencepool %s/%s: annotation %s must be a positive duration, not %q", p.Namespace, p.Name, AnnotationPickerTimeout, v)
		}
		rs.timeout = d
	}
	return rs, nil
}

// pickerConns are the gRPC connections to remote pickers, shared by all
// requests and kept across reloads (keyed by target and TLS mode), so a
// reload does not drop a warm connection. gRPC reconnects by itself; the
// backoff is capped low so a picker that comes back is used again within
// about a second.
type pickerConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	// rr spreads FailOpen requests round-robin over a pool's endpoints.
	rr atomic.Uint64
}

func newPickerConns() *pickerConns { return &pickerConns{conns: map[string]*grpc.ClientConn{}} }

func (pc *pickerConns) get(rs *remoteSpec) (*grpc.ClientConn, error) {
	key := rs.tls + "|" + rs.target
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if c := pc.conns[key]; c != nil {
		return c, nil
	}
	var creds credentials.TransportCredentials
	switch rs.tls {
	case pickerTLSPlaintext:
		creds = insecure.NewCredentials()
	case pickerTLSVerify:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	default:
		// The picker's default certificate is self-signed: nothing to
		// verify it against.
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}) //nolint:gosec // documented default, see AnnotationPickerTLS
	}
	c, err := grpc.NewClient("dns:///"+rs.target,
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(extproc.StreamWindowBytes),
		grpc.WithInitialConnWindowSize(extproc.ConnWindowBytes),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("gateway: endpoint picker %s: %w", rs.target, err)
	}
	pc.conns[key] = c
	return c, nil
}

func (pc *pickerConns) close() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for k, c := range pc.conns {
		_ = c.Close()
		delete(pc.conns, k)
	}
}

// proxyRemote is proxyPool for a pool scheduled by a remote picker: the
// picker decides over ext_proc as it would for Envoy, the request goes to
// its primary endpoint and then its fallbacks, and the response streams to
// the client while being mirrored to the picker for its accounting. When
// the picker fails, FailOpen balances over the pool round-robin and
// FailClose answers 503.
func (s *Server) proxyRemote(ctx context.Context, w http.ResponseWriter, r *http.Request, pool string, rs *remoteSpec, body []byte, parsed *openai.Parsed, retries int, ex *exchange) {
	picking := time.Now()
	x, err := s.pickRemote(ctx, r, rs, body)
	switch took := time.Since(picking); {
	case err != nil && ctx.Err() != nil: // the client left: not the picker's failure
	case err != nil && rs.failOpen:
		s.metrics.PickerCall(pool, telemetry.PickerFailedOpen, took)
	case err != nil:
		s.metrics.PickerCall(pool, telemetry.PickerFailedClosed, took)
	case x.Immediate != nil:
		s.metrics.PickerCall(pool, telemetry.PickerRejected, took)
	default:
		s.metrics.PickerCall(pool, telemetry.PickerDecided, took)
	}
	var endpoints []string
	switch {
	case err != nil && ctx.Err() != nil:
		s.fail(w, parsed.Model, pool, ex.start, upstreamError(ctx.Err()))
		return
	case err != nil && !rs.failOpen:
		s.log.Debug("endpoint picker failed; failing closed", "pool", pool, "picker", rs.target, "err", err)
		w.Header().Set(headerRequestDroppedReason, reasonPickerUnavailable)
		s.fail(w, parsed.Model, pool, ex.start, openai.NewError(http.StatusServiceUnavailable, openai.ErrTypeUnavailable,
			"the endpoint picker of this pool is unavailable"))
		return
	case err != nil:
		s.log.Debug("endpoint picker failed; failing open", "pool", pool, "picker", rs.target, "err", err)
		if endpoints = s.roundRobin(pool, retries+1); len(endpoints) == 0 {
			w.Header().Set(headerRequestDroppedReason, "rejected-no-endpoints")
			s.fail(w, parsed.Model, pool, ex.start, openai.NewError(http.StatusServiceUnavailable, openai.ErrTypeUnavailable,
				"no model server of this pool is ready"))
			return
		}
	case x.Immediate != nil:
		im := x.Immediate
		for k, v := range im.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(im.Status)
		_, _ = w.Write(im.Body)
		s.metrics.RequestDone(parsed.Model, pool, im.Status, time.Since(ex.start), 0)
		return
	default:
		defer x.Close()
		endpoints, body = x.Endpoints, x.Body
		for k, v := range x.SetHeaders {
			if !strings.HasPrefix(k, ":") && k != "content-length" {
				r.Header.Set(k, v)
			}
		}
		for _, k := range x.RemoveHeaders {
			r.Header.Del(k)
		}
	}
	attempts := min(len(endpoints), retries+1)
	s.metrics.InFlight(pool, 1)
	defer s.metrics.InFlight(pool, -1)
	for i, addr := range endpoints[:attempts] {
		resp, err := s.send(ctx, r, "http", addr, "", body)
		last := i == attempts-1 || ctx.Err() != nil
		if retryable(resp, err) && !last {
			drain(resp)
			s.metrics.Retried(pool)
			s.log.Debug("retrying on fallback endpoint", "endpoint", addr, "err", errOr(err, resp))
			continue
		}
		if err != nil {
			s.fail(w, parsed.Model, pool, ex.start, upstreamError(err))
			return
		}
		if x != nil {
			h := make(map[string]string, len(resp.Header))
			for k, v := range resp.Header {
				h[strings.ToLower(k)] = v[0]
			}
			x.ResponseHeaders(resp.StatusCode, h, addr, false)
			resp.Body = &mirrorBody{ReadCloser: resp.Body, x: x}
		}
		s.relay(w, resp, addr, parsed.Model, pool, ex)
		return
	}
}

// pickRemote runs the picker's request phase.
func (s *Server) pickRemote(ctx context.Context, r *http.Request, rs *remoteSpec, body []byte) (*extproc.Exchange, error) {
	conn, err := s.pickers.get(rs)
	if err != nil {
		return nil, err
	}
	h := make(map[string]string, len(r.Header)+4)
	for k, v := range r.Header {
		if len(v) > 0 {
			h[lowerHeaderName(k)] = v[0]
		}
	}
	h[":method"], h[":path"], h[":authority"], h[":scheme"] = r.Method, r.URL.RequestURI(), r.Host, "http"
	return extproc.NewClient(conn, rs.timeout).Pick(ctx, &extproc.PickRequest{Headers: h, Body: body})
}

// roundRobin is FailOpen's plain load balancing: up to n of the pool's
// schedulable endpoints (all its endpoints when none has fresh metrics),
// starting at the next one in turn.
func (s *Server) roundRobin(pool string, n int) []string {
	p := s.store.Pool(pool)
	if p == nil || len(p.Endpoints) == 0 {
		return nil
	}
	eps := datastore.Candidates(nil, p.Endpoints, time.Now(), datastore.DefaultMaxAge)
	if len(eps) == 0 {
		eps = p.Endpoints
	}
	first := int(s.pickers.rr.Add(1) % uint64(len(eps)))
	out := make([]string, 0, min(n, len(eps)))
	for i := 0; i < len(eps) && i < n; i++ {
		out = append(out, eps[(first+i)%len(eps)].Address)
	}
	return out
}

// mirrorBody mirrors what relay reads from the model server to the picker.
type mirrorBody struct {
	io.ReadCloser
	x   *extproc.Exchange
	eos bool
}

func (b *mirrorBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	eos := errors.Is(err, io.EOF) && !b.eos
	if n > 0 || eos {
		// The last bytes and the end travel in one message when the read
		// returns both (a body with Content-Length): one write fewer.
		b.eos = b.eos || eos
		b.x.ResponseBody(p[:n], eos)
	}
	return n, err
}
