package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// onePool is a gateway configuration with one pool named "pool" serving
// testModel from addrs, plus extra documents.
func onePool(t *testing.T, addrs []string, extra ...string) []byte {
	return renderConfig(t, gatewaySpec{Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: addrs}}, Extra: extra})
}

// TestGateway_SharedPrefixConcentratesOnOneReplica: sequential requests
// that share a 6,000-character system prompt all go to one replica, which
// then serves their prompts from its prefix cache; requests with unrelated
// long prompts spread over the replicas. (Real processes: an uninstrumented
// gateway keeps its scrapes on time on a loaded machine.)
func TestGateway_SharedPrefixConcentratesOnOneReplica(t *testing.T) {
	t.Parallel()
	_, api := startPoolProcs(t, 4, nil)
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	var stale staleRejections
	defer stale.report(t)

	const n = 20
	system := text(1, 6000)
	shared := counts{}
	prompt, cached := 0, 0
	for i := range n {
		req := chat{Model: testModel, System: system, User: fmt.Sprintf("Question %d: what does section %d say?", i, i+1), MaxTokens: 4}
		r := postTolerant(ctx, c, chatURL(api), req.body(), nil, &stale)
		if r.Status != http.StatusOK {
			t.Fatalf("shared-prefix request %d: %s", i, r)
		}
		shared[r.Served()]++
		if i > 0 { // the first one fills the cache
			u := usageOf(t, r.Body)
			prompt += u.PromptTokens
			if u.PromptTokensDetails != nil {
				cached += u.PromptTokensDetails.CachedTokens
			}
		}
	}
	top, most := shared.top()
	t.Logf("shared prefix: %v; cached %d of %d prompt tokens", shared, cached, prompt)
	if most < n*8/10 {
		t.Errorf("shared-prefix requests: %v; want >= 80%% on one replica", shared)
	}
	if float64(cached) < 0.8*float64(prompt) {
		t.Errorf("shared-prefix requests after the first: %d of %d prompt tokens cached, want >= 80%%", cached, prompt)
	}
	page := scrape(t, c, "http://"+top+"/metrics")
	hits, queries := metricSum(page, "vllm:prefix_cache_hits_total", nil), metricSum(page, "vllm:prefix_cache_queries_total", nil)
	if queries == 0 || hits < 0.75*queries {
		t.Errorf("replica %s: vllm:prefix_cache_hits_total %v of vllm:prefix_cache_queries_total %v, want >= 75%%", top, hits, queries)
	}

	spread := counts{}
	for i := range n {
		req := chat{Model: testModel, System: text(uint64(100+i), 3000), User: "Summarize the document.", MaxTokens: 4}
		r := postTolerant(ctx, c, chatURL(api), req.body(), nil, &stale)
		if r.Status != http.StatusOK {
			t.Fatalf("unrelated request %d: %s", i, r)
		}
		spread[r.Served()]++
	}
	t.Logf("unrelated prompts: %v", spread)
	if len(spread) < 3 {
		t.Errorf("unrelated prompts went to %v; want >= 3 of 4 replicas", spread)
	}
}

// TestGateway_QueueWeightAbovePrefixSpreadsSharedPrefixLoad: with a
// profile whose queue-scorer weight is above the prefix-cache-scorer's, 64
// concurrent long requests sharing a prefix (already cached on one replica)
// spread over all four replicas: the configured weights are in effect and
// the queue scorer counts the gateway's own in-flight requests.
func TestGateway_QueueWeightAbovePrefixSpreadsSharedPrefixLoad(t *testing.T) {
	t.Parallel()
	// Real processes: a burst of 64 requests costs the -race test binary
	// nothing but the clients.
	addrs, api := startPoolProcs(t, 4, []string{"--max-num-seqs", "4"}, pickerConfigDoc(4, 2, 3, 0))
	got, warm := sharedPrefixBurst(t, api)
	t.Logf("64 concurrent shared-prefix requests (prefix first cached on %s): %v", warm, got)
	for _, a := range addrs {
		if got[a] < 64/16 {
			t.Errorf("replica %s served %d of 64 requests, want >= 4: %v", a, got[a], got)
		}
	}
}

// startPoolProcs runs `igw sim` with replicas replicas of testModel at time
// scale 20 (plus simArgs) and `igw serve` with one pool of them (plus
// extra documents). It returns the replicas' addresses and the gateway's
// API address.
func startPoolProcs(t *testing.T, replicas int, simArgs []string, extra ...string) (addrs []string, api string) {
	t.Helper()
	_, addrs = startSimProc(t, "igw sim", replicas, append([]string{"--model", testModel, "--time-scale", "20"}, simArgs...)...)
	path := filepath.Join(t.TempDir(), "igw.yaml")
	if err := os.WriteFile(path, onePool(t, addrs, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, api, _ = startServeProc(t, path)
	waitAllServe(t, api, addrs)
	return addrs, api
}

// waitAllServe sends short requests with unrelated prompts through the
// gateway at api until each of addrs has served one, so that every replica
// is known to be a scheduling candidate before a test judges routing.
func waitAllServe(t *testing.T, api string, addrs []string) {
	t.Helper()
	c := newClient()
	ctx := withTimeout(t, 15*time.Second)
	seen := counts{}
	i := 0
	eventually(t, 15*time.Second, func() error {
		i++
		r := post(ctx, c, chatURL(api), chat{Model: testModel, User: fmt.Sprintf("Ping %d.", i), MaxTokens: 1}.body(), nil)
		if r.Status == http.StatusOK {
			seen[r.Served()]++
		}
		for _, a := range addrs {
			if seen[a] == 0 {
				return fmt.Errorf("%s has not served yet (%v; last %s)", a, seen, r)
			}
		}
		return nil
	})
}

// sharedPrefixBurst caches a 6,000-character prefix on one replica with one
// request, then sends 64 concurrent 64-token requests sharing it through
// the gateway at addr. It returns where they were served and where the
// prefix was first cached.
func sharedPrefixBurst(t *testing.T, addr string) (counts, string) {
	t.Helper()
	c := newClient()
	ctx := withTimeout(t, 60*time.Second)
	var stale staleRejections
	defer stale.report(t)
	system := text(2, 6000)
	warm := postTolerant(ctx, c, chatURL(addr), chat{Model: testModel, System: system, User: "Warm up.", MaxTokens: 1}.body(), nil, &stale)
	if warm.Status != http.StatusOK {
		t.Fatalf("warm-up: %s", warm)
	}
	const n = 64
	results := runConcurrently(ctx, c, n, n, &stale, func(int) string { return chatURL(addr) }, func(i int) ([]byte, map[string]string) {
		return chat{Model: testModel, System: system, User: fmt.Sprintf("Question %d?", i), MaxTokens: 64, IgnoreEOS: true}.body(), nil
	})
	got := counts{}
	for i, r := range results {
		if r.Status != http.StatusOK {
			t.Fatalf("request %d: %s", i, r)
		}
		got[r.Served()]++
	}
	return got, warm.Served()
}
