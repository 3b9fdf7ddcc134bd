package e2e

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The order in which igw serve releases queued requests, seen at the model
// server. The replica runs one sequence at a time and the gateway holds
// everything past one waiting request (flowGateway), so requests reach it
// one by one in release order and complete in that order.

// completions records the order in which requests finished.
type completions struct {
	mu    sync.Mutex
	order []string
}

func (c *completions) add(label string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order = append(c.order, label)
}

func (c *completions) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.order)
}

// enqueueInOrder sends one request per label (headers by label), each
// only once the previous one is waiting in the gateway's queue, so arrival
// order is known; every result must be 200.
func enqueueInOrder(t *testing.T, ctx context.Context, c *http.Client, url, metrics string, labels []string, headers func(label string) map[string]string, done *completions, wg *sync.WaitGroup) {
	t.Helper()
	for i, label := range labels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := post(ctx, c, url, longChat(100+i, 20), headers(label))
			if r.Status != http.StatusOK {
				t.Errorf("%s: %s", label, r)
			}
			done.add(label)
		}()
		waitMetric(t, c, metrics, "igw_flow_control_queue_size", map[string]string{"pool": flowPoolLabel}, func(v float64) bool { return v == float64(i+1) })
	}
}

// releaseOrder occupies the replica, queues one request per label in
// that order (headers by label), lets the replica go and returns the order
// in which the queued requests completed.
func releaseOrder(t *testing.T, labels []string, headers func(label string) map[string]string) []string {
	t.Helper()
	url, metrics := flowGateway(t, "60s")
	c := newClient()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	busy := occupy(t, ctx, c, url, metrics, 200)
	var done completions
	var wg sync.WaitGroup
	enqueueInOrder(t, ctx, c, url, metrics, labels, headers, &done, &wg)
	for range 2 {
		if r := <-busy; r.Status != http.StatusOK {
			t.Fatalf("occupying request: %s", r)
		}
	}
	wg.Wait()
	return done.get()
}

// TestFlowControlHigherPriorityFirst: batch requests (priority 1) queued
// before interactive ones (priority 10) still reach the replica after all
// of them.
func TestFlowControlHigherPriorityFirst(t *testing.T) {
	got := releaseOrder(t, []string{"batch-1", "batch-2", "batch-3", "interactive-1", "interactive-2", "interactive-3"},
		func(l string) map[string]string {
			return map[string]string{hdrObjective: strings.TrimRight(l, "-0123456789")}
		})
	want := []string{"interactive-1", "interactive-2", "interactive-3", "batch-1", "batch-2", "batch-3"}
	if !slices.Equal(got, want) {
		t.Errorf("completion order %v, want %v (higher band first, FCFS within a flow)", got, want)
	}
}

// TestFlowControlFairnessAcrossTenants: in one band, tenant a queues four
// requests before tenant b queues two; round-robin across flows
// alternates them (a, b, a, b, a, a) rather than serving a's backlog first.
func TestFlowControlFairnessAcrossTenants(t *testing.T) {
	got := releaseOrder(t, []string{"a-1", "a-2", "a-3", "a-4", "b-1", "b-2"},
		func(l string) map[string]string {
			return map[string]string{hdrObjective: "batch", hdrFairness: "tenant-" + l[:1]}
		})
	want := []string{"a-1", "b-1", "a-2", "b-2", "a-3", "a-4"}
	if !slices.Equal(got, want) {
		t.Errorf("completion order %v, want %v (round-robin across tenants, FCFS within each)", got, want)
	}
}
