package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/igw-dev/igw/internal/testredis"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/sim"
)

// quotaKey is the API key the quota tests send; the configuration holds
// only its hash.
const quotaKey = "sk-e2e-quota-key"

// Header names of the quota answers.
const (
	hdrLimitTokens     = "X-Ratelimit-Limit-Tokens"
	hdrRemainingTokens = "X-Ratelimit-Remaining-Tokens"
	hdrResetTokens     = "X-Ratelimit-Reset-Tokens"
	hdrLimitRequests   = "X-Ratelimit-Limit-Requests"
	hdrRemainingReqs   = "X-Ratelimit-Remaining-Requests"
)

func authHeaders() map[string]string {
	return map[string]string{"Authorization": "Bearer " + quotaKey}
}

// quotaDocs are the APIKeys (one key of tenant team-a, charged to the
// QuotaPolicy team-a), the QuotaPolicy (policy: its spec below `spec:`,
// indented by two spaces) and, when redisAddr is set, a Redis QuotaStore
// with the failure mode. The Redis timeout is 3s, not the default 50ms:
// on a loaded two-core test machine (CI runs packages in parallel) 200
// clients can keep a request waiting for a pooled connection longer than
// that, which the gateway treats as Redis not answering. A dead Redis is
// still noticed at once: its port refuses connections.
func quotaDocs(policy, redisAddr, failureMode string) []string {
	sum := sha256.Sum256([]byte(quotaKey))
	docs := []string{
		fmt.Sprintf(`apiVersion: igw.dev/v1alpha1
kind: APIKeys
metadata:
  name: team-a
spec:
  tenant: team-a
  quotas: [team-a]
  keys:
  - id: e2e
    hash: sha256:%s`, hex.EncodeToString(sum[:])),
		"apiVersion: igw.dev/v1alpha1\nkind: QuotaPolicy\nmetadata:\n  name: team-a\nspec:\n" + policy,
	}
	if redisAddr != "" {
		docs = append(docs, fmt.Sprintf(`apiVersion: igw.dev/v1alpha1
kind: QuotaStore
metadata:
  name: quotas
spec:
  type: Redis
  redis:
    address: %q
    timeout: 3s
  failureMode: %s`, redisAddr, failureMode))
	}
	return docs
}

// completion is a /v1/completions request body: no chat template, so the
// simulator counts exactly the prompt tokens the gateway estimates, and
// with ignore_eos exactly max_tokens of output: each admitted request uses
// exactly what it reserved.
func completion(prompt string, maxTokens int) []byte {
	b, _ := json.Marshal(map[string]any{"model": testModel, "prompt": prompt, "max_tokens": maxTokens, "ignore_eos": true})
	return b
}

// Two igw serve replicas share a 20,000-token hourly budget through Redis
// while 200 clients send 1,000 requests, alternating between replicas. The
// Redis script admits a request only if its reservation (prompt tokens +
// max_tokens) fits in what the window counts, atomically across replicas,
// and here each request uses exactly its reservation. So the tokens used
// by the admitted requests, U, satisfy
//
//	L - r_max < U <= L
//
// with L the limit and r_max the largest reservation: never more than the
// limit, and short of it by less than one request (the last one refused
// did not fit). Had requests used more than they reserved (a chat
// template the estimate does not know), U could pass L by that excess
// only.
func TestQuota_TwoServeReplicasShareARedisBudgetUnder200Clients(t *testing.T) {
	const (
		limit     = 20_000
		clients   = 200
		requests  = 1_000
		maxTokens = 16
	)
	redis := testredis.Start(t)
	fleet := startFleet(t, 2, nil)
	raw := renderConfig(t, gatewaySpec{
		Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: fleet.Addrs()}},
		Extra: quotaDocs("  limits:\n  - window: 1h\n    totalTokens: 20000\n", redis.Addr, "FailClose"),
	})
	path := filepath.Join(t.TempDir(), "igw.yaml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, apiA, _ := startServeProc(t, path)
	_, apiB, _ := startServeProc(t, path)
	c := newClient()
	ctx := withTimeout(t, 3*time.Minute)
	prompts := make([]string, requests)
	reservations := make([]int, requests)
	rMax := 0
	for i := range prompts {
		prompts[i] = text(uint64(i), 60+(i*37)%140)
		reservations[i] = openai.CountTokens(prompts[i]) + maxTokens
		rMax = max(rMax, reservations[i])
	}
	results := runConcurrently(ctx, c, requests, clients, nil,
		func(i int) string {
			if i%2 == 0 {
				return "http://" + apiA + "/v1/completions"
			}
			return "http://" + apiB + "/v1/completions"
		},
		func(i int) ([]byte, map[string]string) { return completion(prompts[i], maxTokens), authHeaders() })
	used, admitted, refused := 0, 0, 0
	for i, r := range results {
		switch r.Status {
		case http.StatusOK:
			u := usageOf(t, r.Body)
			if u.PromptTokens+u.CompletionTokens != reservations[i] {
				t.Fatalf("request %d used %d+%d tokens, reserved %d: the premise of the bound fails", i, u.PromptTokens, u.CompletionTokens, reservations[i])
			}
			used += reservations[i]
			admitted++
		case http.StatusTooManyRequests:
			refused++
			checkOpenAIError(t, "refused request", r, http.StatusTooManyRequests)
			if r.Header.Get(hdrDropped) != "rejected-quota-exceeded" || r.Header.Get("Retry-After") == "" ||
				r.Header.Get(hdrLimitTokens) != "20000" || r.Header.Get(hdrRemainingTokens) == "" || r.Header.Get(hdrResetTokens) == "" {
				t.Fatalf("refusal headers: %v", r.Header)
			}
		default:
			t.Fatalf("request %d: %s", i, r)
		}
	}
	t.Logf("%d admitted using %d tokens of %d, %d refused; largest reservation %d", admitted, used, limit, refused, rMax)
	if used > limit {
		t.Fatalf("admitted requests used %d tokens, over the limit of %d", used, limit)
	}
	if used <= limit-rMax {
		t.Fatalf("admitted requests used %d tokens: the budget of %d was refused with more than one request (%d) left", used, limit, rMax)
	}
	if refused == 0 {
		t.Fatal("nothing was refused")
	}
}

// streamEvents reads a streamed response's events.
func streamEvents(t *testing.T, body io.Reader) []string {
	t.Helper()
	var out []string
	r := openai.NewSSEReader(body)
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		out = append(out, string(ev))
	}
}

// deltaTokens counts the output tokens of a chat stream's content deltas.
func deltaTokens(t *testing.T, events []string) int {
	t.Helper()
	n := 0
	for _, ev := range events {
		var c openai.ChatCompletionChunk
		if ev == openai.SSEDone || json.Unmarshal([]byte(ev), &c) != nil {
			continue
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				n += openai.CountTokens(*ch.Delta.Content)
			}
		}
	}
	return n
}

func postStream(t *testing.T, ctx context.Context, c *http.Client, url string, body []byte) (*http.Response, []string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+quotaKey)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream answered %s: %s", resp.Status, b)
	}
	return resp, streamEvents(t, resp.Body)
}

// A stream without max_tokens reserves defaultOutputTokens (10) and is
// topped up while its output grows; with 40 output tokens a minute
// (policy Cut) the first stream is ended after exactly 40 tokens with an
// error event and [DONE], and the next request does not fit. Under Finish
// the same stream runs to its end.
func TestQuota_StreamsAreCutAtTheBudget(t *testing.T) {
	fleet := startFleet(t, 1, func(c *sim.Config) { c.Perf.MeanOutputTokens = 400 })
	for _, tc := range []struct {
		policy string
		cut    bool
	}{{"Cut", true}, {"Finish", false}} {
		t.Run(tc.policy, func(t *testing.T) {
			gw := startGateway(t, renderConfig(t, gatewaySpec{
				Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: fleet.Addrs()}},
				Extra: quotaDocs(fmt.Sprintf("  limits:\n  - window: 1m\n    outputTokens: 40\n  defaultOutputTokens: 10\n  stream: %s\n", tc.policy), "", ""),
			}))
			c := newClient()
			ctx := withTimeout(t, time.Minute)
			body := chat{Model: testModel, User: "tell me a long story", Stream: true, IgnoreEOS: true, MaxTokens: 0}.body()
			resp, events := postStream(t, ctx, c, chatURL(gw.Addr()), body)
			if resp.Header.Get(hdrLimitTokens) != "40" || resp.Header.Get(hdrRemainingTokens) != "30" {
				t.Errorf("stream headers: %v", resp.Header)
			}
			got := deltaTokens(t, events)
			last := events[len(events)-1]
			if !tc.cut {
				if got <= 40 || last != openai.SSEDone || strings.Contains(strings.Join(events, "\n"), `"error"`) {
					t.Fatalf("Finish: %d output tokens, last event %q", got, last)
				}
				return
			}
			if got != 40 {
				t.Fatalf("the cut stream carried %d output tokens, want exactly the 40 of the budget", got)
			}
			if len(events) < 2 || last != openai.SSEDone {
				t.Fatalf("the cut stream does not end with [DONE]: %q", last)
			}
			var e openai.ErrorResponse
			if err := json.Unmarshal([]byte(events[len(events)-2]), &e); err != nil || e.Error.Type != openai.ErrTypeRateLimit || e.Error.Code != openai.CodeRateLimitExceeded {
				t.Fatalf("the event before [DONE] is not a rate-limit error: %s", events[len(events)-2])
			}
			r := post(ctx, c, chatURL(gw.Addr()), chat{Model: testModel, User: "more", Stream: true}.body(), authHeaders())
			checkOpenAIError(t, "request after the budget is spent", r, http.StatusTooManyRequests)
			page := scrape(t, c, "http://"+gw.AdminAddr()+"/metrics")
			if metricSum(page, "igw_quota_stream_cuts_total", nil) != 1 ||
				metricSum(page, "igw_quota_rejections_total", map[string]string{"limit": "default/team-a/1m/output_tokens"}) != 1 {
				t.Errorf("quota metrics:\n%s", grepLines(page, "igw_quota_"))
			}
		})
	}
}

func grepLines(page, prefix string) string {
	var out []string
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Redis is killed while clients keep sending, then started again (empty,
// as after a crash without persistence). FailOpen keeps answering 200,
// counting in this replica's memory (the remaining-requests header jumps
// back to the full local limit), FailClose answers 503 with
// rejected-quota-unavailable; both return to Redis by themselves once it
// answers again.
func TestQuota_RedisKilledMidRun(t *testing.T) {
	fleet := startFleet(t, 1, nil)
	for _, mode := range []string{"FailOpen", "FailClose"} {
		t.Run(mode, func(t *testing.T) {
			redis := testredis.Start(t)
			gw := startGateway(t, renderConfig(t, gatewaySpec{
				Pools: []poolSpec{{Name: "pool", Model: testModel, Addrs: fleet.Addrs()}},
				Extra: quotaDocs("  limits:\n  - window: 1h\n    requests: 100000\n", redis.Addr, mode),
			}))
			c := newClient()
			ctx := withTimeout(t, 2*time.Minute)
			url := "http://" + gw.Addr() + "/v1/completions"
			var (
				mu       sync.Mutex
				statuses = map[string]int{}
				phase    atomic.Value
				stop     = make(chan struct{})
				wg       sync.WaitGroup
			)
			phase.Store("up")
			record := func(r result) {
				mu.Lock()
				defer mu.Unlock()
				key := fmt.Sprintf("%s/%d", phase.Load(), r.Status)
				if r.Status == http.StatusServiceUnavailable {
					key += "/" + r.Header.Get(hdrDropped)
				}
				statuses[key]++
			}
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 2000; i++ { // bounded; stopped long before
						select {
						case <-stop:
							return
						default:
						}
						record(post(ctx, c, url, completion(text(uint64(w*10000+i), 80), 4), authHeaders()))
					}
				}()
			}
			send := func() result { return post(ctx, c, url, completion("one more", 4), authHeaders()) }
			eventually(t, 10*time.Second, func() error {
				if n, _ := redis.CommandCalls("evalsha"); n < 20 {
					return fmt.Errorf("%d admissions in Redis so far", n)
				}
				return nil
			})
			// The phase changes first: a request answered while Redis is
			// being stopped belongs to the outage.
			phase.Store("down")
			redis.Stop()
			switch mode {
			case "FailOpen":
				var r result
				eventually(t, 10*time.Second, func() error {
					r = send()
					if r.Status != http.StatusOK {
						return fmt.Errorf("with Redis down: %s", r)
					}
					// Local counters started at zero when Redis went away.
					if rem, _ := strconv.Atoi(r.Header.Get(hdrRemainingReqs)); rem < 99_900 {
						return fmt.Errorf("remaining requests %d: not the fresh local counter", rem)
					}
					return nil
				})
			case "FailClose":
				var r result
				eventually(t, 10*time.Second, func() error {
					r = send()
					if r.Status != http.StatusServiceUnavailable {
						return fmt.Errorf("with Redis down: %s", r)
					}
					return nil
				})
				checkOpenAIError(t, "request with Redis down", r, http.StatusServiceUnavailable)
				if r.Header.Get(hdrDropped) != "rejected-quota-unavailable" {
					t.Errorf("reason header %q", r.Header.Get(hdrDropped))
				}
			}
			time.Sleep(300 * time.Millisecond) // let the clients see the outage
			redis.Restart()
			phase.Store("restarted")
			// Recovered: admissions reach the new Redis again, and the
			// gateway says so.
			eventually(t, 15*time.Second, func() error {
				if r := send(); r.Status != http.StatusOK {
					return fmt.Errorf("after restart: %s", r)
				}
				if n, _ := redis.CommandCalls("eval"); n < 1 {
					return fmt.Errorf("no admission reached the restarted Redis yet")
				}
				return nil
			})
			close(stop)
			wg.Wait()
			page := scrape(t, c, "http://"+gw.AdminAddr()+"/metrics")
			if v := metricSum(page, "igw_quota_fallback_active", nil); v != 0 {
				t.Errorf("igw_quota_fallback_active = %v after recovery", v)
			}
			mu.Lock()
			defer mu.Unlock()
			t.Logf("answers by phase: %v", statuses)
			for k, n := range statuses {
				phase, status, _ := strings.Cut(k, "/")
				ok := status == "200" || (mode == "FailClose" && phase != "up" && status == "503/rejected-quota-unavailable")
				if !ok {
					t.Errorf("%d answers %s during phase %s", n, status, phase)
				}
			}
			if mode == "FailOpen" && statuses["down/200"] == 0 {
				t.Error("no request was served while Redis was down")
			}
			if mode == "FailClose" && statuses["down/503/rejected-quota-unavailable"] == 0 {
				t.Error("no request was refused while Redis was down")
			}
		})
	}
}
