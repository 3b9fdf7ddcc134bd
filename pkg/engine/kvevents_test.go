package engine_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/sim"
)

const kvEventsConfig = `apiVersion: igw.dev/v1alpha1
kind: ModelServer
metadata: {name: sim-0, labels: {app: sim}}
spec: {address: 127.0.0.1, ports: [{number: %[1]s}], kvEventsPort: %[2]s}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: sim}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: %[1]s}]
%[3]s`

const preciseEPC = `---
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: precise-prefix-cache-scorer
  - pluginRef: max-score-picker
`

// TestEngine_SubscribesToKVEventsForThePreciseScorer: with a
// precise-prefix-cache-scorer configured, the engine subscribes to every
// endpoint's KV-cache events at the ModelServer's kvEventsPort (a real igw
// sim over ZeroMQ on loopback) and its index follows the replica's cache;
// a reload without the scorer unsubscribes and forgets the entries.
func TestEngine_SubscribesToKVEventsForThePreciseScorer(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Port, cfg.Model, cfg.KVCacheBlocks, cfg.BlockSize, cfg.TimeScale = 0, "m", 16, 4, 1000
	cfg.KVEvents = &sim.KVEventsConfig{EnableKVCacheEvents: true, Endpoint: "tcp://127.0.0.1:0"}
	fleet, err := sim.StartFleet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fleet.Close(ctx)
	}()
	addr := fleet.Addrs()[0]
	_, httpPort, _ := net.SplitHostPort(addr)
	_, kvPort, _ := net.SplitHostPort(strings.TrimPrefix(fleet.Servers()[0].KVEventsAddr(), "tcp://"))
	load := func(epc string) *config.Config {
		c, err := schema.Parse("kv.yaml", []byte(fmt.Sprintf(kvEventsConfig, httpPort, kvPort, epc)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e, err := engine.New(load(preciseEPC), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	eventually := func(what string, cond func() bool) {
		t.Helper()
		end := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(end) {
				t.Fatalf("not within 30s: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	post := func(path, body string) {
		t.Helper()
		resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ix := e.KVIndex()
	i := 0
	eventually("the index sees the replica's blocks", func() bool {
		i++
		post("/v1/completions", fmt.Sprintf(`{"model":"m","prompt":"warm %d a b c d e f g h","max_tokens":1}`, i))
		return ix.Stats(addr).Blocks > 0
	})
	post("/reset_prefix_cache", "")
	for j := range 12 {
		post("/v1/completions", fmt.Sprintf(`{"model":"m","prompt":"shared prefix one two three four five six %d seven eight nine","max_tokens":2}`, j))
	}
	eventually("index equals the replica's cache", func() bool {
		return slices.Equal(ix.Hashes(addr), fleet.Servers()[0].Engine().CachedBlockHashes())
	})

	if err := e.Reload(load("")); err != nil {
		t.Fatal(err)
	}
	eventually("entries forgotten once no plugin reads them", func() bool { return len(ix.Endpoints()) == 0 })
}
