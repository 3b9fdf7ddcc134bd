// Command floor is the cheapest ext_proc server that can stand where igw
// epp stands: gRPC-Go with igw's server settings, answering every request
// with a fixed destination and echoing its body (FULL_DUPLEX_STREAMED), and
// doing nothing else. igw bench picker run against it measures the floor of
// the transport on a machine: the CPU per decision no Go picker on gRPC-Go
// can go below there (docs/performance.md, "The transport floor").
//
//	go run ./bench/picker/floor --tls --address 127.0.0.1:19102
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/igw-dev/igw/pkg/extproc"
)

func main() {
	addr := flag.String("address", "127.0.0.1:19102", "listen address")
	useTLS := flag.Bool("tls", false, "serve TLS with a self-signed certificate, as igw epp does by default")
	flag.Parse()
	opts := []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
		grpc.InitialWindowSize(extproc.StreamWindowBytes),
		grpc.InitialConnWindowSize(extproc.ConnWindowBytes),
	}
	if *useTLS {
		cfg, err := extproc.TLSConfig("")
		if err != nil {
			log.Fatal(err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	s := grpc.NewServer(opts...)
	extprocv3.RegisterExternalProcessorServer(s, echo{})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ext_proc floor server on %s (tls %v) since %s\n", ln.Addr(), *useTLS, time.Now().Format(time.TimeOnly))
	log.Fatal(s.Serve(ln))
}

// echo answers the whole request body with a fixed destination and the
// body itself, in chunks under extproc.MaxChunkBytes.
type echo struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (echo) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	var body []byte
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		b := m.GetRequestBody()
		if b == nil {
			continue
		}
		body = append(body, b.GetBody()...)
		if !b.GetEndOfStream() {
			continue
		}
		if err := s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
				Header: &corev3.HeaderValue{Key: extproc.HeaderDestinationEndpoint, RawValue: []byte("127.0.0.1:18001")},
			}}}},
		}}}); err != nil {
			return err
		}
		for first := true; first || len(body) > 0; first = false {
			n := min(len(body), extproc.MaxChunkBytes)
			if err := s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
				Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{
					StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body[:n], EndOfStream: n == len(body)},
				}}},
			}}}); err != nil {
				return err
			}
			body = body[n:]
		}
	}
}
