package roundrobin

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
	"github.com/igw-dev/igw/pkg/scheduling/schedtest"
)

func TestRoundRobinPicker_CyclesInAddressOrder(t *testing.T) {
	a, b, c := schedtest.Endpoint("10.0.0.1:80", nil, 0), schedtest.Endpoint("10.0.0.2:80", nil, 0), schedtest.Endpoint("10.0.0.3:80", nil, 0)
	p := New(Type)
	orders := [][]*datastore.Endpoint{{c, a, b}, {b, c, a}, {a, b, c}, {c, b, a}}
	var got []string
	for i := range 6 {
		cands := schedtest.Candidates(orders[i%len(orders)]...)
		picked := p.Pick(context.Background(), nil, cands, nil, 2, nil)
		got = append(got, cands[picked[0]].Endpoint.Address+">"+cands[picked[1]].Endpoint.Address)
	}
	want := []string{
		"10.0.0.1:80>10.0.0.2:80", "10.0.0.2:80>10.0.0.3:80", "10.0.0.3:80>10.0.0.1:80",
		"10.0.0.1:80>10.0.0.2:80", "10.0.0.2:80>10.0.0.3:80", "10.0.0.3:80>10.0.0.1:80",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("picks %v, want %v", got, want)
	}
}

func TestRoundRobinPicker_FairUnderConcurrency(t *testing.T) {
	eps := schedtest.Fleet(5, 1)
	p := New(Type)
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cands := schedtest.Candidates(eps...)
			for range 250 {
				i := p.Pick(context.Background(), nil, cands, nil, 1, nil)[0]
				mu.Lock()
				counts[cands[i].Endpoint.Address]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for addr, n := range counts {
		if n != 200 {
			t.Fatalf("%s picked %d times, want 200: %v", addr, n, counts)
		}
	}
}
