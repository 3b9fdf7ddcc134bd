package gateway

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
)

// KindGateway is the kind of the Gateway document.
const KindGateway = "Gateway"

// Defaults of the Gateway kind. They are constants, not variables, so that
// no caller can change another caller's defaults.
const (
	DefaultAddress            = ":8080"
	DefaultAdminAddress       = ":9090"
	DefaultMaxRequestBodySize = 10 << 20 // 10 MiB
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultRequestTimeout     = 10 * time.Minute
	DefaultIdleTimeout        = 2 * time.Minute
	// DefaultBodyIdleTimeout is the longest a client may pause while
	// sending a request body: long enough for any live client on a bad
	// network, short enough that a trickled body lets go of its buffer.
	DefaultBodyIdleTimeout = 10 * time.Second
	// DefaultBodyGrace is how long a body may take before the minimum
	// rate applies (slow starts, small bodies on slow links).
	DefaultBodyGrace = 5 * time.Second
	// DefaultMinBodyRate is the slowest a body may arrive after the
	// grace, in bytes per second: a 10 MiB body may take 5s + 160s.
	DefaultMinBodyRate = 64 << 10
	// DefaultMaxBufferedBodyBytes bounds the buffer bytes all request
	// bodies in flight hold together: 1 GiB is 100 maximal bodies, or
	// about 4,000 clients each pinning a first 256 KiB buffer.
	DefaultMaxBufferedBodyBytes = 1 << 30
)

// Kind declares the Gateway kind for the configuration loader: the
// standalone data plane's listeners. igw serve hands it to the engine's
// schema (engine.Schema), which places it among the engine's kinds. It is
// a function, not a package variable, so that no caller can change
// another's.
func Kind() config.Kind {
	return config.Kind{
		Kind: KindGateway, APIVersions: []string{config.IGWAPIVersion}, Singleton: true,
		New:      func() config.Object { return new(Gateway) },
		Default:  func() config.Object { return defaultGatewayObject() },
		Validate: func(o config.Object, f *config.Fields) { validate(o.(*Gateway), f) },
	}
}

// Settings is the Gateway of cfg: the file's, or the defaults when it has
// none (or was parsed without the Gateway kind).
func Settings(cfg *config.Config) *Gateway {
	if g, ok := config.First[*Gateway](cfg); ok {
		return g
	}
	return defaultGatewayObject()
}

func defaultGatewayObject() *Gateway {
	g := &Gateway{}
	g.APIVersion, g.Kind = config.IGWAPIVersion, KindGateway
	g.Namespace = config.DefaultNamespace
	defaultGateway(g)
	return g
}

// The Gateway's body limit and request timeout bound every request, on
// either data plane; the engine reads them through engine.RequestBounds.
var _ engine.RequestBounds = (*Gateway)(nil)

// MaxRequestBodyBytes is the largest request body accepted.
func (g *Gateway) MaxRequestBodyBytes() int64 { return g.Spec.MaxRequestBodyBytes() }

// RequestTimeout bounds a request whose Route sets no timeout (0: none).
func (g *Gateway) RequestTimeout() time.Duration {
	if g.Spec.Timeouts.Request == nil {
		return DefaultRequestTimeout
	}
	return g.Spec.Timeouts.Request.Duration
}

// Gateway (kind Gateway, igw.dev/v1alpha1) configures igw's own HTTP
// listeners: where the OpenAI-compatible API and the admin endpoints
// listen, how large a request body may be and how long a client may take.
// A file has at most one; without one, every field takes its default.
//
//	apiVersion: igw.dev/v1alpha1
//	kind: Gateway
//	metadata:
//	  name: igw
//	spec:
//	  address: ":8080"            # the OpenAI-compatible API
//	  adminAddress: ":9090"       # /metrics, /healthz, /readyz
//	  maxRequestBodySize: 10Mi
//	  maxBufferedBodyBytes: 1Gi   # all bodies in flight together; over it: 503
//	  minBodyRate: 64Ki           # bytes/s a body must average after timeouts.bodyGrace; 0: off
//	  unencryptedHTTP2: true      # h2c with prior knowledge beside HTTP/1.1
//	  tls:                        # optional: TLS (HTTP/2 by ALPN) instead
//	    certFile: tls.crt         # relative to this file
//	    keyFile: tls.key
//	  timeouts:
//	    readHeader: 10s
//	    bodyIdle: 10s             # longest pause while a body is sent; over it: 408
//	    bodyGrace: 5s
//	    request: 10m
//	    idle: 2m
//
// A client that sends its body too slowly (a pause over bodyIdle, or less
// than minBodyRate on average once bodyGrace has passed) gets 408 and its
// connection is closed; a body that would take the buffers of all bodies in
// flight over maxBufferedBodyBytes gets 503 with Retry-After: 1. Both are
// counted in igw_request_body_rejections_total. Headers over net/http's
// limit (1 MiB) get net/http's own plain-text 431: it is answered before
// the gateway sees the request and cannot take the OpenAI error shape.
type Gateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the listener configuration.
	Spec GatewaySpec `json:"spec,omitempty"`
}

// GatewaySpec is the listener configuration of a Gateway. After Parse every
// pointer is non-nil.
type GatewaySpec struct {
	// Address is the host:port the OpenAI-compatible API listens on
	// (default ":8080"). Port 0 picks a free port, which tests use.
	Address string `json:"address,omitempty"`

	// AdminAddress is the host:port serving /metrics, /healthz and /readyz
	// (default ":9090"). It is separate from Address so that scraping and
	// probes keep working when the API listener is saturated, and so that
	// they can be bound to a private interface.
	AdminAddress string `json:"adminAddress,omitempty"`

	// MaxRequestBodySize bounds a request body (default 10Mi); larger
	// requests get 413 before any of the body is parsed. A Kubernetes
	// quantity: 10485760, 10Mi and 10M are all accepted.
	MaxRequestBodySize *resource.Quantity `json:"maxRequestBodySize,omitempty"`

	// MaxBufferedBodyBytes bounds the buffer bytes held by all request
	// bodies being read or forwarded at once (default 1Gi). Buffers grow
	// with the bytes received, so this bounds what clients can make the
	// gateway hold, however many connections they open; a request whose
	// body would go over it gets 503 with Retry-After: 1.
	MaxBufferedBodyBytes *resource.Quantity `json:"maxBufferedBodyBytes,omitempty"`

	// MinBodyRate is the slowest average rate, in bytes per second, at
	// which a request body may arrive once Timeouts.BodyGrace has passed
	// (default 64Ki); slower gets 408. "0" turns the rate off, leaving
	// Timeouts.BodyIdle.
	MinBodyRate *resource.Quantity `json:"minBodyRate,omitempty"`

	// UnencryptedHTTP2 serves HTTP/2 without TLS (h2c, prior knowledge)
	// on Address beside HTTP/1.1 (default true): clients and proxies in
	// front of the gateway may multiplex many requests on one connection.
	UnencryptedHTTP2 *bool `json:"unencryptedHTTP2,omitempty"`

	// TLS serves Address over TLS, HTTP/2 and HTTP/1.1 chosen by ALPN.
	// Without it the API listener is plaintext (HTTP/1.1 and h2c).
	TLS *GatewayTLS `json:"tls,omitempty"`

	// Timeouts bound how long clients may take.
	Timeouts GatewayTimeouts `json:"timeouts,omitempty"`
}

// GatewayTLS is the API listener's certificate. The files are read when
// the configuration loads, so a missing or mismatched pair fails the load
// (naming the field) rather than the first client's handshake; a reload
// picks up renewed files only on restart, as listener addresses.
type GatewayTLS struct {
	// CertFile and KeyFile are PEM files, relative to the configuration
	// file: a certificate chain and its private key (a mounted Kubernetes
	// TLS secret's tls.crt and tls.key).
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`

	// Certificate is the pair read from the files at load; not part of
	// the file.
	Certificate *tls.Certificate `json:"-"`
}

// MaxRequestBodyBytes is MaxRequestBodySize in bytes, or the default when
// it is unset.
func (s *GatewaySpec) MaxRequestBodyBytes() int64 {
	if s.MaxRequestBodySize == nil {
		return DefaultMaxRequestBodySize
	}
	return s.MaxRequestBodySize.Value()
}

// front is the body settings of s, with defaults for what is unset (a
// Gateway built in code rather than parsed).
func (s *GatewaySpec) front() (idle, grace time.Duration, rate, buffered int64, h2c bool) {
	idle, grace, rate, buffered, h2c = DefaultBodyIdleTimeout, DefaultBodyGrace, DefaultMinBodyRate, DefaultMaxBufferedBodyBytes, true
	if t := s.Timeouts.BodyIdle; t != nil {
		idle = t.Duration
	}
	if t := s.Timeouts.BodyGrace; t != nil {
		grace = t.Duration
	}
	if q := s.MinBodyRate; q != nil {
		rate = q.Value()
	}
	if q := s.MaxBufferedBodyBytes; q != nil {
		buffered = q.Value()
	}
	if s.UnencryptedHTTP2 != nil {
		h2c = *s.UnencryptedHTTP2
	}
	return idle, grace, rate, buffered, h2c
}

// GatewayTimeouts are the listener's timeouts, as Go duration strings
// ("30s", "10m"). After Parse every field is non-nil.
type GatewayTimeouts struct {
	// ReadHeader bounds the time to read a request's headers (default 10s).
	// It must be positive: without it a slow client can hold a connection
	// open forever.
	ReadHeader *metav1.Duration `json:"readHeader,omitempty"`

	// BodyIdle bounds each wait for the next bytes of a request body
	// (default 10s). It must be positive: without it a client trickling
	// its body holds a connection and a buffer forever.
	BodyIdle *metav1.Duration `json:"bodyIdle,omitempty"`

	// BodyGrace is how long a body may take before MinBodyRate applies
	// (default 5s).
	BodyGrace *metav1.Duration `json:"bodyGrace,omitempty"`

	// Request bounds a whole request, from its first byte to the end of the
	// (possibly streamed) response (default 10m, long enough for a long
	// generation). "0s" means no limit. A Route's timeout overrides it.
	Request *metav1.Duration `json:"request,omitempty"`

	// Idle bounds how long a keep-alive connection may wait for its next
	// request (default 2m). It must be positive.
	Idle *metav1.Duration `json:"idle,omitempty"`
}

// defaultGateway fills in every unset Gateway field.
func defaultGateway(g *Gateway) {
	s := &g.Spec
	if s.Address == "" {
		s.Address = DefaultAddress
	}
	if s.AdminAddress == "" {
		s.AdminAddress = DefaultAdminAddress
	}
	if s.MaxRequestBodySize == nil {
		s.MaxRequestBodySize = resource.NewQuantity(DefaultMaxRequestBodySize, resource.BinarySI)
	}
	if s.MaxBufferedBodyBytes == nil {
		s.MaxBufferedBodyBytes = resource.NewQuantity(DefaultMaxBufferedBodyBytes, resource.BinarySI)
	}
	if s.MinBodyRate == nil {
		s.MinBodyRate = resource.NewQuantity(DefaultMinBodyRate, resource.BinarySI)
	}
	if s.UnencryptedHTTP2 == nil {
		on := true
		s.UnencryptedHTTP2 = &on
	}
	t := &s.Timeouts
	if t.BodyIdle == nil {
		t.BodyIdle = &metav1.Duration{Duration: DefaultBodyIdleTimeout}
	}
	if t.BodyGrace == nil {
		t.BodyGrace = &metav1.Duration{Duration: DefaultBodyGrace}
	}
	if t.ReadHeader == nil {
		t.ReadHeader = &metav1.Duration{Duration: DefaultReadHeaderTimeout}
	}
	if t.Request == nil {
		t.Request = &metav1.Duration{Duration: DefaultRequestTimeout}
	}
	if t.Idle == nil {
		t.Idle = &metav1.Duration{Duration: DefaultIdleTimeout}
	}
}

func validate(g *Gateway, f *config.Fields) {
	defaultGateway(g)
	s := &g.Spec
	f.HostPort("spec.address", s.Address)
	f.HostPort("spec.adminAddress", s.AdminAddress)
	if s.AdminAddress == s.Address && !strings.HasSuffix(s.Address, ":0") {
		f.Errorf("spec.adminAddress", "must differ from spec.address (%s)", s.Address)
	}
	if s.MaxRequestBodySize.Sign() <= 0 {
		f.Errorf("spec.maxRequestBodySize", "must be positive, not %s", s.MaxRequestBodySize)
	}
	if s.MaxBufferedBodyBytes.Sign() <= 0 {
		f.Errorf("spec.maxBufferedBodyBytes", "must be positive, not %s", s.MaxBufferedBodyBytes)
	}
	if s.MinBodyRate.Sign() < 0 {
		f.Errorf("spec.minBodyRate", "must not be negative, not %s", s.MinBodyRate)
	}
	if s.TLS != nil {
		validateTLS(s.TLS, f)
	}
	t := s.Timeouts
	f.PositiveDuration("spec.timeouts.readHeader", t.ReadHeader.Duration)
	f.PositiveDuration("spec.timeouts.bodyIdle", t.BodyIdle.Duration)
	f.NonNegativeDuration("spec.timeouts.bodyGrace", t.BodyGrace.Duration)
	f.PositiveDuration("spec.timeouts.idle", t.Idle.Duration)
	f.NonNegativeDuration("spec.timeouts.request", t.Request.Duration)
}

func validateTLS(t *GatewayTLS, f *config.Fields) {
	if t.CertFile == "" || t.KeyFile == "" {
		f.Errorf("spec.tls", "set both certFile and keyFile")
		return
	}
	cert, err := f.ReadFile(t.CertFile)
	if err != nil {
		f.Error("spec.tls.certFile", err)
		return
	}
	key, err := f.ReadFile(t.KeyFile)
	if err != nil {
		f.Error("spec.tls.keyFile", err)
		return
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		f.Error("spec.tls", fmt.Errorf("certFile and keyFile: %w", err))
		return
	}
	t.Certificate = &pair
}
