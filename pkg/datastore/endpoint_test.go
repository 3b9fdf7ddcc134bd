package datastore_test

import (
	"sync"
	"testing"

	"github.com/igw-dev/igw/pkg/datastore"
)

type owner struct{ name string }

// Each plugin instance sees only its own state, concurrent writers do not
// lose each other's entries, and nil removes an entry.
func TestEndpoint_PluginStateIsPerOwnerAndSurvivesConcurrentWrites(t *testing.T) {
	ep := datastore.NewEndpoint("a", "10.0.0.1:8000", "pool", "", nil)
	owners := make([]*owner, 16)
	for i := range owners {
		owners[i] = &owner{name: string(rune('a' + i))}
	}
	if v := ep.PluginState(owners[0]); v != nil {
		t.Fatalf("fresh endpoint has state %v", v)
	}
	var wg sync.WaitGroup
	for i, o := range owners {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				ep.SetPluginState(o, i)
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				if v := ep.PluginState(o); v != nil && v.(int) != i {
					t.Errorf("owner %d read %v", i, v)
				}
			}
		}()
	}
	wg.Wait()
	for i, o := range owners {
		if v := ep.PluginState(o); v != i {
			t.Fatalf("owner %d: %v after concurrent writes", i, v)
		}
	}
	ep.SetPluginState(owners[3], nil)
	if v := ep.PluginState(owners[3]); v != nil {
		t.Fatalf("removed state reads %v", v)
	}
	if v := ep.PluginState(owners[4]); v != 4 {
		t.Fatalf("removing one owner's state changed another's: %v", v)
	}
	// Same-named owners are different instances.
	if v := ep.PluginState(&owner{name: owners[4].name}); v != nil {
		t.Fatalf("another instance read %v", v)
	}
}
