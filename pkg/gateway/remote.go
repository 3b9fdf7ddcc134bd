package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/director"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/extproc"
	"github.com/igw-dev/igw/pkg/telemetry"
)

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

func (pc *pickerConns) get(rs *director.RemotePicker) (*grpc.ClientConn, error) {
	key := rs.TLS + "|" + rs.Target
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if c := pc.conns[key]; c != nil {
		return c, nil
	}
	var creds credentials.TransportCredentials
	switch rs.TLS {
	case engine.PickerTLSPlaintext:
		creds = insecure.NewCredentials()
	case engine.PickerTLSVerify:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	default:
		// The picker's default certificate is self-signed: nothing to
		// verify it against.
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}) //nolint:gosec // documented default, see engine.AnnotationPickerTLS
	}
	c, err := grpc.NewClient("dns:///"+rs.Target,
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(extproc.StreamWindowBytes),
		grpc.WithInitialConnWindowSize(extproc.ConnWindowBytes),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("gateway: endpoint picker %s: %w", rs.Target, err)
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

// pickerExchange is a remote picker's view of one request after its
// decision: the response is mirrored to it for its accounting.
type pickerExchange interface {
	ResponseHeaders(status int, headers map[string]string, served string, eos bool)
	ResponseBody(chunk []byte, eos bool)
	Close()
}

// remoteTargets asks a pool's remote picker where the request goes: the
// picker decides over ext_proc as it would for Envoy, and its header
// mutations apply to the outgoing request. When the picker fails, FailOpen
// balances over the pool round-robin and FailClose answers 503; the
// picker's own refusals (an ImmediateResponse) reach the client as they
// are.
func (s *Server) remoteTargets(ctx context.Context, x *director.Exchange, in *director.Inbound) (*targets, *director.Reply) {
	rs, pool := x.Backend.Remote, x.Backend.Pool
	picking := time.Now()
	px, err := s.pickRemote(ctx, in, rs, x.Body)
	switch took := time.Since(picking); {
	case err != nil && ctx.Err() != nil: // the client left: not the picker's failure
	case err != nil && rs.FailOpen:
		s.metrics.PickerCall(pool, telemetry.PickerFailedOpen, took)
	case err != nil:
		s.metrics.PickerCall(pool, telemetry.PickerFailedClosed, took)
	case px.Immediate != nil:
		s.metrics.PickerCall(pool, telemetry.PickerRejected, took)
	default:
		s.metrics.PickerCall(pool, telemetry.PickerDecided, took)
	}
	t := &targets{scheme: "http"}
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, x.Fail(ctx, ctx.Err())
	case err != nil && !rs.FailOpen:
		s.log.Debug("endpoint picker failed; failing closed", "pool", pool, "picker", rs.Target, "err", err)
		return nil, x.Fail(ctx, director.ErrPickerUnavailable(err))
	case err != nil:
		s.log.Debug("endpoint picker failed; failing open", "pool", pool, "picker", rs.Target, "err", err)
		if t.hosts = s.roundRobin(pool, x.Retries()+1); len(t.hosts) == 0 {
			return nil, x.Fail(ctx, errNoReadyEndpoint)
		}
	case px.Immediate != nil:
		im := px.Immediate
		h := make(http.Header, len(im.Headers))
		for k, v := range im.Headers {
			h.Set(k, v)
		}
		return nil, x.Answer(im.Status, h, im.Body)
	default:
		t.hosts, t.picker = px.Endpoints, px
		x.Body = px.Body
		hdr := x.Header()
		for k, v := range px.SetHeaders {
			if !strings.HasPrefix(k, ":") && k != "content-length" {
				hdr.Set(k, v)
			}
		}
		for _, k := range px.RemoveHeaders {
			hdr.Del(k)
		}
	}
	return t, nil
}

// errNoReadyEndpoint is a FailOpen pool with no endpoint to balance over.
var errNoReadyEndpoint = errors.New("no model server of this pool is ready")

// pickRemote runs the picker's request phase.
func (s *Server) pickRemote(ctx context.Context, in *director.Inbound, rs *director.RemotePicker, body []byte) (*extproc.Exchange, error) {
	conn, err := s.pickers.get(rs)
	if err != nil {
		return nil, err
	}
	h := make(map[string]string, len(in.Header)+4)
	for k, v := range in.Header {
		if len(v) > 0 {
			h[strings.ToLower(k)] = v[0]
		}
	}
	h[":method"], h[":path"], h[":scheme"] = in.Method, in.Path, "http"
	if host := in.Header.Get("Host"); host != "" {
		h[":authority"] = host
	}
	return extproc.NewClient(conn, rs.Timeout).Pick(ctx, &extproc.PickRequest{Headers: h, Body: body})
}

// roundRobin is FailOpen's plain load balancing: up to n of the pool's
// schedulable endpoints (all its endpoints when none has fresh metrics),
// starting at the next one in turn.
func (s *Server) roundRobin(pool string, n int) []string {
	p := s.engine.Store().Pool(pool)
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
	x   pickerExchange
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
