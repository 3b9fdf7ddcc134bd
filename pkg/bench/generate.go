package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// words is the fixed vocabulary prompts are built from. Every entry is one
// to five ASCII letters, so under openai's tokenizer the word alone and the
// word after a space are each exactly one token, and a text of n words
// separated by single spaces is exactly n tokens. That makes lengths exact
// by construction and makes a text that extends another (after a newline)
// an exact token prefix of it.
var words = [...]string{
	"about", "above", "act", "add", "after", "again", "age", "ago", "agree", "air",
	"all", "allow", "also", "among", "and", "angle", "apple", "area", "arm", "art",
	"ask", "back", "bad", "ball", "bank", "base", "bear", "beat", "bed", "begin",
	"bell", "best", "big", "bird", "black", "blood", "blue", "board", "boat", "body",
	"bone", "book", "born", "both", "box", "boy", "bread", "break", "bring", "brown",
	"build", "burn", "busy", "buy", "call", "camp", "can", "car", "card", "care",
	"carry", "case", "cat", "catch", "cause", "cell", "chair", "chart", "check", "child",
	"city", "claim", "class", "clean", "clear", "climb", "clock", "close", "cloud", "coast",
	"coat", "cold", "color", "come", "cook", "cool", "copy", "corn", "cost", "count",
	"cover", "cow", "crop", "cross", "crowd", "cry", "cut", "dance", "dark", "day",
	"dead", "deal", "dear", "deep", "did", "die", "dog", "door", "down", "draw",
	"dream", "dress", "drink", "drive", "drop", "dry", "duck", "each", "ear", "early",
	"earth", "ease", "east", "eat", "edge", "egg", "eight", "end", "enemy", "enter",
	"equal", "even", "event", "ever", "every", "exact", "eye", "face", "fact", "fair",
	"fall", "farm", "fast", "fat", "fear", "feed", "feel", "few", "field", "fig",
	"fill", "final", "find", "fine", "fire", "first", "fish", "fit", "five", "flat",
	"floor", "flow", "fly", "food", "foot", "force", "form", "found", "four", "free",
	"fresh", "from", "front", "fruit", "full", "game", "gas", "gave", "get", "gift",
	"girl", "give", "glad", "glass", "goal", "gold", "good", "grass", "gray", "great",
	"green", "grew", "group", "grow", "guess", "guide", "hair", "half", "hand", "happy",
	"hard", "hat", "have", "head", "hear", "heart", "heat", "heavy", "help", "high",
	"hill", "hit", "hold", "hole", "home", "hope", "horse", "hot", "hour", "house",
	"huge", "human", "hunt", "ice", "idea", "inch", "iron", "inner", "job", "join",
	"joy", "judge", "jump", "just", "keep", "key", "kind", "king", "knew", "know",
	"lady", "lake", "land", "large", "last", "late", "laugh", "law", "lay", "lead",
	"learn", "least", "leave", "left", "leg", "less", "level", "lie", "life", "lift",
	"light", "like", "line", "list", "loan", "live", "long", "look", "lost", "loud",
}

// minVocabulary is the fewest words a Workload.Vocabulary may have: with
// fewer, a 100-word question repeats others' too often to be unique.
const minVocabulary = 32

// textGen writes word texts from a seeded generator.
type textGen struct {
	rng   *rand.Rand
	vocab []string // nil: words
}

func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}

// text returns n vocabulary words separated by single spaces: exactly n
// tokens.
func (g textGen) text(n int) string {
	var b strings.Builder
	b.Grow(n * 6)
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		if g.vocab != nil {
			b.WriteString(g.vocab[g.rng.IntN(len(g.vocab))])
		} else {
			b.WriteString(words[g.rng.IntN(len(words))])
		}
	}
	return b.String()
}

// Random streams of a workload's seed, one per purpose, so that changing
// how one is used does not shift the others.
const (
	streamText     = 1
	streamOrder    = 2
	streamMix      = 3
	streamSessions = 1 << 32 // + session index
)

// mixer applies the LoRA, priority and fairness mixes to a request.
type mixer struct {
	model          string
	lora, pri, fai weighted
	slo            []SLOClass
	sloCum         []float64
}

type weighted struct {
	names []string
	cum   []float64 // cumulative weights
}

func newWeighted(mix []WeightedName) weighted {
	var w weighted
	total := 0.0
	for _, e := range mix {
		total += e.Weight
		w.names = append(w.names, e.Name)
		w.cum = append(w.cum, total)
	}
	return w
}

// pick draws a name by weight; "" when the mix is empty. It always draws
// from rng when the mix is non-empty, so picks do not shift other draws
// differently per outcome.
func (w weighted) pick(rng *rand.Rand) string {
	if len(w.names) == 0 {
		return ""
	}
	x := rng.Float64() * w.cum[len(w.cum)-1]
	i, _ := slices.BinarySearchFunc(w.cum, x, func(c, x float64) int {
		if c <= x {
			return -1
		}
		return 1
	})
	return w.names[min(i, len(w.names)-1)]
}

func newMixer(w *Workload) *mixer {
	m := &mixer{model: w.Model, lora: newWeighted(w.LoRAMix), pri: newWeighted(w.PriorityMix), fai: newWeighted(w.FairnessMix)}
	sum := 0.0
	for _, c := range w.SLOMix {
		sum += c.Weight
		m.slo = append(m.slo, c)
		m.sloCum = append(m.sloCum, sum)
	}
	return m
}

// apply sets req's model and headers from the mixes.
func (m *mixer) apply(rng *rand.Rand, req *Request) {
	req.Model = m.model
	if name := m.lora.pick(rng); name != "" {
		req.Model = name
	}
	req.Objective = m.pri.pick(rng)
	req.FairnessID = m.fai.pick(rng)
	if len(m.slo) > 0 { // no draw without a mix: other workloads' sequences stay as they were
		x := rng.Float64() * m.sloCum[len(m.sloCum)-1]
		i, _ := slices.BinarySearch(m.sloCum, x)
		c := m.slo[min(i, len(m.slo)-1)]
		req.TTFTObjective = time.Duration(c.TTFTMs) * time.Millisecond
		req.TPOTObjective = time.Duration(c.TPOTMs) * time.Millisecond
	}
}

// messagesOrPrompt shapes a request's content for the workload's API: chat
// messages, or for completions the contents joined by newlines (so a
// shared system prompt is still an exact token prefix).
func messagesOrPrompt(api string, req *Request, msgs []openai.ChatMessage) {
	if api != APICompletions {
		req.Messages = msgs
		return
	}
	parts := make([]string, len(msgs))
	for i, m := range msgs {
		parts[i] = m.Content.Text
	}
	req.Prompt = strings.Join(parts, "\n")
}

func message(role, text string) openai.ChatMessage {
	return openai.ChatMessage{Role: role, Content: openai.MessageContent{Text: text}}
}

// sharedPrefixSource generates the shared-prefix workload.
type sharedPrefixSource struct {
	cfg SharedPrefix
	api string
	mix *mixer

	// systems[g] is group g's system prompt; questions[g][p] its prompts.
	systems   []string
	questions [][]string

	mu     sync.Mutex
	order  []int // a permutation of group*NumPromptsPerGroup + prompt
	pos    int
	ordRNG *rand.Rand
	mixRNG *rand.Rand
}

func newSharedPrefixSource(w *Workload, mix *mixer) *sharedPrefixSource {
	c := *w.SharedPrefix
	s := &sharedPrefixSource{cfg: c, api: w.API, mix: mix,
		ordRNG: newRand(w.Seed, streamOrder), mixRNG: newRand(w.Seed, streamMix)}
	g := textGen{newRand(w.Seed, streamText), w.Vocabulary}
	s.systems = make([]string, c.NumGroups)
	s.questions = make([][]string, c.NumGroups)
	for i := range c.NumGroups {
		s.systems[i] = g.text(c.SystemPromptLen)
		s.questions[i] = make([]string, c.NumPromptsPerGroup)
		for p := range c.NumPromptsPerGroup {
			s.questions[i][p] = g.text(c.QuestionLen)
		}
	}
	s.order = make([]int, c.NumGroups*c.NumPromptsPerGroup)
	for i := range s.order {
		s.order[i] = i
	}
	s.pos = len(s.order) // shuffle before the first request
	return s
}

// Next returns the next prompt of the seeded order.
func (s *sharedPrefixSource) Next() *Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pos == len(s.order) {
		s.ordRNG.Shuffle(len(s.order), func(i, j int) { s.order[i], s.order[j] = s.order[j], s.order[i] })
		s.pos = 0
	}
	idx := s.order[s.pos]
	s.pos++
	g, p := idx/s.cfg.NumPromptsPerGroup, idx%s.cfg.NumPromptsPerGroup
	req := &Request{MaxTokens: s.cfg.OutputLen, Group: g}
	messagesOrPrompt(s.api, req, []openai.ChatMessage{
		message("system", s.systems[g]),
		message("user", s.questions[g][p]),
	})
	s.mix.apply(s.mixRNG, req)
	return req
}

// Complete does nothing: shared-prefix requests are independent.
func (s *sharedPrefixSource) Complete(*Request, *RequestResult, string) {}

// shareGPTSource generates independent requests of log-normal lengths.
type shareGPTSource struct {
	cfg ShareGPT
	api string
	mix *mixer

	mu     sync.Mutex
	text   textGen
	lenRNG *rand.Rand
	mixRNG *rand.Rand
}

func newShareGPTSource(w *Workload, mix *mixer) *shareGPTSource {
	return &shareGPTSource{cfg: *w.ShareGPT, api: w.API, mix: mix,
		text: textGen{newRand(w.Seed, streamText), w.Vocabulary}, lenRNG: newRand(w.Seed, streamOrder), mixRNG: newRand(w.Seed, streamMix)}
}

// logNormal draws a length with the given mean and log-space sigma,
// clamped to [lo, hi]: mu = ln(mean) − sigma²/2 makes the mean (before
// clamping) the one asked for.
func logNormal(rng *rand.Rand, mean, sigma float64, lo, hi int) int {
	mu := math.Log(mean) - sigma*sigma/2
	n := int(math.Round(math.Exp(mu + sigma*rng.NormFloat64())))
	return min(max(n, lo), hi)
}

// Next returns a fresh request.
func (s *shareGPTSource) Next() *Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := logNormal(s.lenRNG, s.cfg.InputMean, s.cfg.InputSigma, s.cfg.InputMin, s.cfg.InputMax)
	out := logNormal(s.lenRNG, s.cfg.OutputMean, s.cfg.OutputSigma, s.cfg.OutputMin, s.cfg.OutputMax)
	req := &Request{MaxTokens: out, Group: -1}
	messagesOrPrompt(s.api, req, []openai.ChatMessage{message("user", s.text.text(in))})
	s.mix.apply(s.mixRNG, req)
	return req
}

// Complete does nothing: the requests are independent.
func (s *shareGPTSource) Complete(*Request, *RequestResult, string) {}

// session is one multi-turn conversation.
type session struct {
	id       int
	text     textGen
	messages []openai.ChatMessage
	turn     int
	model    string
	obj, fai string
}

// multiTurnSource interleaves growing chat sessions.
type multiTurnSource struct {
	cfg   MultiTurn
	seed  int64
	mix   *mixer
	vocab []string // Workload.Vocabulary

	mu      sync.Mutex
	ready   []*session // sessions whose next turn can go, oldest first
	live    int        // sessions open (ready or waiting for an answer)
	nextID  int
	pending map[*Request]*session
}

func newMultiTurnSource(w *Workload, mix *mixer) *multiTurnSource {
	s := &multiTurnSource{cfg: *w.MultiTurn, seed: w.Seed, mix: mix, vocab: w.Vocabulary, pending: map[*Request]*session{}}
	for range s.cfg.NumSessions {
		s.ready = append(s.ready, s.open())
	}
	return s
}

// open starts session number nextID. Its text and mix picks come from its
// own random stream, so session k is the same in every run however turns
// interleave.
func (s *multiTurnSource) open() *session {
	id := s.nextID
	s.nextID++
	s.live++
	rng := newRand(s.seed, streamSessions+uint64(id))
	ss := &session{id: id, text: textGen{rng, s.vocab}}
	var probe Request
	s.mix.apply(rng, &probe)
	ss.model, ss.obj, ss.fai = probe.Model, probe.Objective, probe.FairnessID
	if s.cfg.SystemPromptLen > 0 {
		ss.messages = append(ss.messages, message("system", ss.text.text(s.cfg.SystemPromptLen)))
	}
	return ss
}

// Next sends the next turn of the session that has waited longest.
func (s *multiTurnSource) Next() *Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ready) == 0 {
		s.ready = append(s.ready, s.open())
	}
	ss := s.ready[0]
	s.ready = slices.Delete(s.ready, 0, 1)
	ss.messages = append(ss.messages, message("user", ss.text.text(s.cfg.UserLen)))
	req := &Request{
		Model: ss.model, Objective: ss.obj, FairnessID: ss.fai,
		Messages: slices.Clone(ss.messages), MaxTokens: s.cfg.OutputLen,
		Group: ss.id, Turn: ss.turn, CollectAnswer: true,
	}
	s.pending[req] = ss
	return req
}

// Complete appends the answer and queues the session's next turn, or
// replaces a finished or failed session.
func (s *multiTurnSource) Complete(req *Request, res *RequestResult, answer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.pending[req]
	if !ok {
		return
	}
	delete(s.pending, req)
	ss.turn++
	if res.OK() && ss.turn < s.cfg.Turns {
		ss.messages = append(ss.messages, message("assistant", answer))
		s.ready = append(s.ready, ss)
		return
	}
	s.live--
	if s.live < s.cfg.NumSessions {
		s.ready = append(s.ready, s.open())
	}
}
