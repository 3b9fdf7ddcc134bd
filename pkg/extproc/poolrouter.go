package extproc

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// PoolMetadataKey is the gRPC metadata key naming the InferencePool of an
// ext_proc stream when one picker serves several pools. Envoy sends it as
// initial metadata of the ext_proc stream (per route:
// ExtProcPerRoute.overrides.grpc_initial_metadata), so a client cannot
// choose another pool by sending a header.
const PoolMetadataKey = "x-gateway-inference-pool"

// PoolRouter serves several pools on one ext_proc port, each with its own
// Picker (and so its own Director, datastore, scheduler and flow control):
// a stream goes to the pool its PoolMetadataKey names.
type PoolRouter struct {
	extprocv3.UnimplementedExternalProcessorServer

	pickers map[string]*Picker // by "namespace/name" and by "name"
	names   []string
}

var _ extprocv3.ExternalProcessorServer = (*PoolRouter)(nil)

// NewPoolRouter routes to pickers, keyed by their pools' "namespace/name";
// a stream may name a pool by either form.
func NewPoolRouter(pickers map[string]*Picker) (*PoolRouter, error) {
	if len(pickers) == 0 {
		return nil, errors.New("extproc: a pool router needs pickers")
	}
	r := &PoolRouter{pickers: map[string]*Picker{}}
	for key, p := range pickers {
		_, name, ok := strings.Cut(key, "/")
		if !ok {
			return nil, fmt.Errorf("extproc: pool %q is not namespace/name", key)
		}
		if _, dup := r.pickers[name]; dup {
			return nil, fmt.Errorf("extproc: two pools are named %q; name them namespace/name", name)
		}
		r.pickers[key], r.pickers[name] = p, p
		r.names = append(r.names, key)
	}
	slices.Sort(r.names)
	return r, nil
}

// Process hands the stream to the picker of the pool its metadata names.
// A stream naming no pool, or one not served, fails with InvalidArgument
// before anything is read: Envoy then applies the filter's failure mode,
// as for an unreachable picker.
func (r *PoolRouter) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	md, _ := metadata.FromIncomingContext(srv.Context())
	vals := md.Get(PoolMetadataKey)
	if len(vals) != 1 {
		return status.Errorf(codes.InvalidArgument, "this picker serves several InferencePools (%s): name one in the gRPC metadata %s of the ext_proc stream", strings.Join(r.names, ", "), PoolMetadataKey)
	}
	p := r.pickers[vals[0]]
	if p == nil {
		return status.Errorf(codes.InvalidArgument, "%s %q: not a pool of this picker (%s)", PoolMetadataKey, vals[0], strings.Join(r.names, ", "))
	}
	return p.Process(srv)
}
