package preciseprefix_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/igw-dev/igw/pkg/kvevents"
	"github.com/igw-dev/igw/pkg/openai"
	"github.com/igw-dev/igw/pkg/scheduling"
	"github.com/igw-dev/igw/pkg/scheduling/plugins/preciseprefix"
	"github.com/igw-dev/igw/pkg/tokenizer"
)

const tinyTokenizer = "../../../tokenizer/testdata/tiny-chatml"

// engineStores is the BlockStored events an engine with its own hash
// function publishes after prefilling tokens in blocks of bs.
func engineStores(tokens []uint32, bs int, seed uint64) []kvevents.Event {
	ev := kvevents.Event{Kind: kvevents.KindBlockStored, BlockSize: bs}
	h := seed
	for b := 0; (b+1)*bs <= len(tokens); b++ {
		h = h*1099511628211 + uint64(tokens[b*bs]) + 7 // any hash will do: igw keys by tokens
		ev.BlockHashes = append(ev.BlockHashes, h)
		ev.TokenIDs = append(ev.TokenIDs, tokens[b*bs:(b+1)*bs]...)
	}
	return []kvevents.Event{ev}
}

func chatRequest(system, question string) *scheduling.Request {
	body := `{"model":"m","messages":[{"role":"system","content":` + quote(system) + `},{"role":"user","content":` + quote(question) + `}]}`
	return &scheduling.Request{Model: "m", Kind: openai.KindChat, Body: []byte(body), Prompt: []byte("system\n" + system + "\nuser\n" + question + "\n")}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func TestTokenHasher_MatchesWhatTheEngineReportsFromItsTokens(t *testing.T) {
	tk, err := tokenizer.Load(tinyTokenizer, tokenizer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	system := strings.Repeat("The gateway routes each request to the replica that caches its prefix. ", 12)
	// The engine tokenizes the conversation with the same files.
	engineTokens, err := tk.EncodeChat([]tokenizer.Message{{Role: "system", Content: system}, {Role: "user", Content: "first question"}})
	if err != nil {
		t.Fatal(err)
	}
	ix := kvevents.NewIndex(0)
	ix.Apply("a:8000", engineStores(engineTokens.IDs, 16, 1))
	s := newScorer(t, preciseprefix.Parameters{Tokenizer: tinyTokenizer})
	s.AttachIndex(ix)
	if !s.Hashing() {
		t.Fatal("a scorer with a tokenizer does not hash")
	}
	cands := candidates("a:8000", "b:8000")
	scores := make([]float64, 2)
	// The same conversation: every full block is held by a.
	s.Score(context.Background(), chatRequest(system, "first question"), cands, scores)
	if scores[0] != 1 || scores[1] != 0 {
		t.Errorf("same chat scored %v, want [1 0]", scores)
	}
	// Another question after the same system prompt: the shared blocks.
	s.Score(context.Background(), chatRequest(system, "a different question entirely"), cands, scores)
	if scores[0] <= 0.5 || scores[0] >= 1 || scores[1] != 0 {
		t.Errorf("shared system prompt scored %v, want a partial match on a only", scores)
	}
	// A different system prompt: no endpoint holds any of it, so it is
	// placed by rendezvous hashing (one endpoint scores 1, the same one
	// every time), not scored as a partial hit.
	otherSystem := strings.Repeat("Another assistant entirely, with other instructions for every answer it gives. ", 4)
	other := chatRequest(otherSystem, "first question")
	s.Score(context.Background(), other, cands, scores)
	first := append([]float64(nil), scores...)
	if scores[0]+scores[1] != 1 || scores[0]*scores[1] != 0 {
		t.Errorf("unrelated prompt scored %v, want a placement on one endpoint", scores)
	}
	s.Score(context.Background(), chatRequest(otherSystem, "second question"), cands, scores)
	if scores[0] != first[0] || scores[1] != first[1] {
		t.Errorf("same leading blocks placed differently: %v then %v", first, scores)
	}
	// A completion of the rendered text tokenizes the same way.
	text, _ := tk.RenderChat([]tokenizer.Message{{Role: "system", Content: system}, {Role: "user", Content: "first question"}})
	s.Score(context.Background(), &scheduling.Request{Model: "m", Kind: openai.KindCompletion, Prompt: []byte(text)}, cands, scores)
	if scores[0] != 1 {
		t.Errorf("completion of the rendered chat scored %v, want 1", scores[0])
	}
}

func TestTokenHasher_PerModelTokenizersAndUnhashableRequests(t *testing.T) {
	h, err := preciseprefix.NewTokenHasher("", map[string]string{"llama": tinyTokenizer}, 16, 512, 0)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("tokens of a long prompt ", 30)
	if _, _, ok := h.BlockHashes(&scheduling.Request{Model: "llama", Kind: openai.KindCompletion, Prompt: []byte(long)}); !ok {
		t.Error("llama completion not hashed")
	}
	for name, req := range map[string]*scheduling.Request{
		"other model":   {Model: "mistral", Kind: openai.KindCompletion, Prompt: []byte(long)},
		"chat no body":  {Model: "llama", Kind: openai.KindChat, Prompt: []byte(long)},
		"chat bad body": {Model: "llama", Kind: openai.KindChat, Body: []byte(`{"messages": 7}`)},
		"embeddings":    {Model: "llama", Kind: openai.KindEmbeddings, Prompt: []byte(long)},
	} {
		if _, _, ok := h.BlockHashes(req); ok {
			t.Errorf("%s: hashed", name)
		}
	}
	// Rewritten target model picks its tokenizer.
	if _, _, ok := h.BlockHashes(&scheduling.Request{Model: "alias", TargetModel: "llama", Kind: openai.KindCompletion, Prompt: []byte(long)}); !ok {
		t.Error("target model's tokenizer not used")
	}
}

func TestScorer_SpeculativeEntriesExpireUnlessEventsConfirm(t *testing.T) {
	ix := kvevents.NewIndex(0)
	ix.Apply("a:8000", stored(1)) // a holds p's first block for real
	h := &fakeHasher{hashes: map[string][]uint64{"p": {1, 2, 3, 4}, "q": {9, 8}}}
	s := newScorer(t, preciseprefix.Parameters{SpeculativeTTL: "200ms"})
	s.Attach(ix, h)
	cands := candidates("a:8000", "b:8000")
	scores := make([]float64, 2)
	req := &scheduling.Request{Prompt: []byte("p")}
	s.Score(context.Background(), req, cands, scores)
	s.PreRequest(context.Background(), req, nil, cands[1].Endpoint)
	// Routed to b a moment ago: b holds it speculatively.
	s.Score(context.Background(), &scheduling.Request{Prompt: []byte("p")}, cands, scores)
	if scores[1] != 1 || scores[0] != 0.25 {
		t.Errorf("speculative entry scored %v, want [0.25 1]", scores)
	}
	// b's events confirm q's blocks; p's are never confirmed.
	s.PreRequest(context.Background(), &scheduling.Request{Prompt: []byte("q")}, nil, cands[1].Endpoint)
	ix.Apply("b:8000", stored(9, 8))
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.Score(context.Background(), &scheduling.Request{Prompt: []byte("p")}, cands, scores)
		if scores[1] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("speculative entry never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Score(context.Background(), &scheduling.Request{Prompt: []byte("q")}, cands, scores)
	if scores[1] != 1 {
		t.Errorf("confirmed blocks scored %v after the TTL, want 1", scores[1])
	}
}

func TestScorer_LoadBoundSpillsHotPrefix(t *testing.T) {
	ix := kvevents.NewIndex(0)
	ix.Apply("a:8000", stored(1, 2))
	s := newScorer(t, preciseprefix.Parameters{})
	s.Attach(ix, &fakeHasher{hashes: map[string][]uint64{"p": {1, 2}}})
	cands := candidates("a:8000", "b:8000", "c:8000")
	cands[0].Metrics.WaitingQueueSize = 10 // a holds the prefix but queues
	scores := make([]float64, 3)
	s.Score(context.Background(), &scheduling.Request{Prompt: []byte("p")}, cands, scores)
	if scores[0] != 0 {
		t.Errorf("over-bound holder scored %v", scores[0])
	}
	if scores[1]+scores[2] != 1 || scores[1]*scores[2] != 0 {
		t.Errorf("hot prefix did not spill to exactly one of b, c: %v", scores)
	}
}
