package main

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/igw-dev/igw/pkg/bench"
)

// allocMeter measures the heap bytes a Go process allocates over a run,
// from the Go collector's counter on its /metrics.
type allocMeter struct {
	url    string
	client *http.Client
	start  float64
	// idleRate is what the process allocated per second with no load, over
	// the idle window before the run: its background work (scrapes of
	// model servers, the meter's own /metrics reads), which a per-request
	// figure should not be charged with.
	idleRate float64
}

// newAllocMeter reads the counter at metricsURL, watches it for idle (if
// positive) to learn the idle rate, and starts the measurement.
func newAllocMeter(ctx context.Context, metricsURL string, idle time.Duration) (*allocMeter, error) {
	m := &allocMeter{url: metricsURL, client: &http.Client{Timeout: 10 * time.Second}}
	a0, err := bench.ScrapeAllocBytes(ctx, m.client, m.url)
	if err != nil {
		return nil, err
	}
	if idle > 0 {
		t0 := time.Now()
		select {
		case <-time.After(idle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		a1, err := bench.ScrapeAllocBytes(ctx, m.client, m.url)
		if err != nil {
			return nil, err
		}
		m.idleRate = (a1 - a0) / time.Since(t0).Seconds()
		a0 = a1
	}
	m.start = a0
	return m, nil
}

// stop returns the bytes allocated since the measurement started.
func (m *allocMeter) stop(ctx context.Context) (float64, error) {
	a, err := bench.ScrapeAllocBytes(ctx, m.client, m.url)
	return a - m.start, err
}

// kb formats a byte count for a report line.
func kb(b float64) string {
	if b >= 1<<20 {
		return strconv.FormatFloat(b/(1<<20), 'f', 2, 64) + " MiB"
	}
	return strconv.FormatFloat(b/1024, 'f', 1, 64) + " KiB"
}
