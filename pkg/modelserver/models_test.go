package modelserver

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/sim"
)

func TestScraper_LearnsLoadedAdaptersFromModelList(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Port, cfg.Model, cfg.LoRAModules = 0, "base", []string{"sql"}
	fleet, err := sim.StartFleet(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close(context.Background())
	addr := fleet.Addrs()[0]

	s, err := NewScraper(Options{HealthInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ep := datastore.NewEndpoint("sim", addr, "p", datastore.EngineVLLM, nil)
	s.SetEndpoints([]*datastore.Endpoint{ep})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitModels := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Equal(ep.ServedModels(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("served models %v, want %v", ep.ServedModels(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitModels([]string{"base", "sql"})
	resp, err := http.Post("http://"+addr+"/v1/load_lora_adapter", "application/json", strings.NewReader(`{"lora_name":"chat","lora_path":"/x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitModels([]string{"base", "chat", "sql"}) // idle, yet known
	if m := ep.Metrics(); m == nil || !slices.Equal(m.BaseModels, []string{"base"}) {
		t.Fatalf("metrics base models: %+v", m)
	}
}
