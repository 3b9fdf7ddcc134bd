package extproc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"runtime"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/igw-dev/igw/internal/bufpool"
)

// Health service names an ext_proc server reports, besides ServiceName and
// "" (the whole server): the names Kubernetes probes of Endpoint Pickers
// ask for.
const (
	HealthLiveness  = "liveness"
	HealthReadiness = "readiness"
)

// HTTP/2 flow-control windows of igw's ext_proc connections, both
// directions: large enough that a whole request body (and its echo) is
// never held up by window updates, as Envoy's own defaults are.
const (
	StreamWindowBytes = 1 << 20
	ConnWindowBytes   = 16 << 20
)

// NewGRPCServer serves p (a Picker or a BodyRouter) with settings for
// Envoy: messages large enough for a BUFFERED body of maxBody bytes, and
// keepalive pings from Envoy accepted on idle connections. tlsCfg nil
// serves plaintext.
func NewGRPCServer(p extprocv3.ExternalProcessorServer, maxBody int, tlsCfg *tls.Config) *grpc.Server {
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	buffers := &bufpool.GRPC{}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxBody + 1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Envoy opens a stream per HTTP request: reusing handler goroutines
		// (whose stacks have grown) instead of starting one per stream saves
		// the stack growth on every request. Streams beyond the workers get
		// their own goroutine as usual.
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
		// Request bodies run to megabytes: with gRPC's 64 KiB starting
		// windows (grown by BDP probes) a 200 KB body stalls on window
		// updates; fixed large windows cut the picker's CPU per 200 KB
		// decision by 30% (docs/performance.md).
		grpc.InitialWindowSize(StreamWindowBytes),
		grpc.InitialConnWindowSize(ConnWindowBytes),
		// Frames, assembled messages and encoded answers go in pooled
		// buffers that gRPC's defaults zero before every use, although every
		// byte is then overwritten (see codec).
		experimental.BufferPool(buffers),
		grpc.ForceServerCodecV2(codec{pool: buffers}),
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	s := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(s, p)
	return s
}

// NewHealthServer is a gRPC health server on its own grpc.Server (the
// health port): liveness and "" serve at once; readiness and the ext_proc
// service start NOT_SERVING until SetReady. It is plaintext unless tlsCfg
// is set: Kubernetes' gRPC probes (and the upstream picker's) speak
// plaintext, so only a probe that speaks TLS can check a TLS health port.
func NewHealthServer(tlsCfg *tls.Config) (*grpc.Server, *health.Server) {
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(HealthLiveness, healthpb.HealthCheckResponse_SERVING)
	SetReady(hs, false)
	var opts []grpc.ServerOption
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, hs)
	return s, hs
}

// SetReady sets the readiness and ext_proc service statuses.
func SetReady(hs *health.Server, ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus(HealthReadiness, st)
	hs.SetServingStatus(ServiceName, st)
}

// WatchReadiness polls ready every interval and reports it on hs until ctx
// ends; then everything is NOT_SERVING, so Envoy and Kubernetes stop
// sending before the server goes away.
func WatchReadiness(ctx context.Context, hs *health.Server, ready func() bool, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		SetReady(hs, ready())
		select {
		case <-ctx.Done():
			hs.Shutdown()
			return
		case <-t.C:
		}
	}
}

// TLSConfig is the server TLS configuration for --secure-serving: the
// tls.crt and tls.key of certDir (a mounted Kubernetes TLS secret), or,
// when certDir is empty, a self-signed certificate made in memory (Envoy's
// ext_proc cluster is usually configured without verifying it).
func TLSConfig(certDir string) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if certDir != "" {
		cert, err = tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	} else {
		cert, err = SelfSignedCertificate(time.Now())
	}
	if err != nil {
		return nil, fmt.Errorf("extproc: TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}, nil
}

// SelfSignedCertificate makes an ECDSA P-256 certificate valid for a year
// from now, for localhost and the loopback addresses.
func SelfSignedCertificate(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"igw"}, CommonName: "igw ext_proc"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
