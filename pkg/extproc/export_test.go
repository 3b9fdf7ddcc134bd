package extproc

import (
	"context"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// NewFixedProcessor is an ext_proc server that runs the same stream driver
// as the Picker but decides nothing: every request goes to dest. Benchmarks
// serve it beside the Picker to separate the cost of the transport (gRPC,
// protobuf, TLS when on) and the driver from the Director's own work.
func NewFixedProcessor(dest string) extprocv3.ExternalProcessorServer {
	return &fixedProcessor{dest: dest, cfg: streamConfig{strip: pickerOwnedHeaders(), maxBody: DefaultMaxBodyBytes, defaultMode: BodyModeFullDuplexStream}}
}

type fixedProcessor struct {
	extprocv3.UnimplementedExternalProcessorServer
	dest string
	cfg  streamConfig
}

func (p *fixedProcessor) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	return serveStream(srv, fixedExchange(p.dest), &p.cfg)
}

type fixedExchange string

func (f fixedExchange) request(context.Context, *httpRequest) (*verdict, *rejection) {
	v := &verdict{metadata: lbMetadata(string(f))}
	v.edits.setHeader(HeaderDestinationEndpoint, string(f))
	return v, nil
}

func (fixedExchange) responseHeaders(context.Context, *httpResponse) (bool, []header) {
	return false, nil
}

func (fixedExchange) responseBody(_ context.Context, chunk []byte, _, _ bool) []byte { return chunk }

func (fixedExchange) end(context.Context) {}
