package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/extproc"
)

// TestBenchPicker_MeasuresARealPicker drives igw epp (TLS, two simulated
// replicas) in both loops and checks the report adds up.
func TestBenchPicker_MeasuresARealPicker(t *testing.T) {
	l, _ := startSimEPP(t)
	waitServing(t, dial(t, l.health, false), extproc.ServiceName)

	run := func(f benchPickerFlags) pickerReport {
		t.Helper()
		f.target, f.tls, f.model, f.mode = l.grpc, true, demoModel, "FULL_DUPLEX_STREAMED"
		f.promptBytes, f.distinct, f.chunkBytes = 4096, 5, 1000
		f.warmup, f.pickerPID = 100*time.Millisecond, os.Getpid()
		f.pickerMetrics, f.idle = "http://"+l.metrics+"/metrics", 100*time.Millisecond
		var out bytes.Buffer
		if err := runBenchPicker(context.Background(), &out, f); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		_, js, ok := strings.Cut(out.String(), "json          ")
		if !ok {
			t.Fatalf("no json line:\n%s", out.String())
		}
		var rep pickerReport
		if err := json.Unmarshal([]byte(strings.TrimSpace(js)), &rep); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", out.String())
		return rep
	}

	closed := run(benchPickerFlags{concurrency: 4, duration: 500 * time.Millisecond})
	if closed.Decided == 0 || closed.Failed != 0 || closed.Rejected != 0 || closed.Latency.Count != closed.Decided {
		t.Errorf("closed loop: %+v", closed)
	}
	if closed.PickerCPUPerDecision <= 0 {
		t.Errorf("picker CPU not measured: %+v", closed)
	}
	// The picker runs in this process, so its counter also counts the load
	// generator's allocations: at least a 4 KB body per decision.
	if closed.PickerBytesPerDecision < 4096 || closed.PickerNetBytesPerDecision <= 0 || closed.PickerNetBytesPerDecision > closed.PickerBytesPerDecision {
		t.Errorf("picker allocation: %+v", closed)
	}

	// 100 requests at 200/s: every one is started on schedule and decided.
	open := run(benchPickerFlags{rate: 200, duration: 500 * time.Millisecond})
	if open.Decided != 100 || open.Failed != 0 || open.Dropped != 0 {
		t.Errorf("open loop at 200/s for 0.5 s: %+v", open)
	}
}

func TestBenchPicker_BadFlags(t *testing.T) {
	var out bytes.Buffer
	err := runBenchPicker(context.Background(), &out, benchPickerFlags{target: "127.0.0.1:1", model: "m", mode: "STREAMED", promptBytes: 1, distinct: 1, duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "--body-mode") {
		t.Fatalf("err %v", err)
	}
}
