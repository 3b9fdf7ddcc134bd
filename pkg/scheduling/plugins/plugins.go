package plugins

import (
	"fmt"

	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/kvcache"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/labelselector"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/latency"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/leastrequest"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/lora"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/maxscore"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/preciseprefix"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/prefix"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/queue"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/random"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/roundrobin"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/running"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/singleprofile"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/weightedrandom"
)

// RegisterAll adds every built-in plugin type to r, e.g. to extend a
// registry that already has custom plugins.
func RegisterAll(r *scheduling.Registry) error {
	for _, reg := range []func(*scheduling.Registry) error{
		queue.Register,
		kvcache.Register,
		prefix.Register,
		preciseprefix.Register,
		latency.Register,
		lora.Register,
		running.Register,
		leastrequest.Register,
		labelselector.Register,
		maxscore.Register,
		random.Register,
		weightedrandom.Register,
		roundrobin.Register,
		singleprofile.Register,
	} {
		if err := reg(r); err != nil {
			return fmt.Errorf("registering built-in plugins: %w", err)
		}
	}
	return nil
}

// NewRegistry returns a registry with every built-in plugin type: the one
// to pass to scheduling.NewScheduler unless you add custom plugins.
func NewRegistry() *scheduling.Registry {
	r := scheduling.NewRegistry()
	if err := RegisterAll(r); err != nil {
		// The built-in types are distinct constants; this cannot happen.
		panic(err)
	}
	return r
}

// NewDefaultScheduler builds the scheduler used when no EndpointPickerConfig
// is given: queue-scorer 2, kv-cache-utilization-scorer 2,
// prefix-cache-scorer 3, max-score-picker.
func NewDefaultScheduler(opts ...scheduling.Option) (*scheduling.Scheduler, error) {
	return scheduling.NewDefaultScheduler(NewRegistry(), opts...)
}

// NewSchedulerFromYAML parses an EndpointPickerConfig document and builds a
// scheduler from it with the built-in registry, in one step. No document
// (empty raw) means the default profile, as a configuration without an
// EndpointPickerConfig does.
func NewSchedulerFromYAML(raw []byte, opts ...scheduling.Option) (*scheduling.Scheduler, error) {
	if len(raw) == 0 {
		return NewDefaultScheduler(opts...)
	}
	cfg, err := scheduling.ParseEndpointPickerConfig(raw)
	if err != nil {
		return nil, err
	}
	return scheduling.NewScheduler(cfg, NewRegistry(), opts...)
}
