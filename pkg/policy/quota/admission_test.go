package quota

import (
	"context"
	"strings"
	"testing"

	"github.com/igw-dev/igw/pkg/openai"
)

func TestSettlement_UsesUsageThenCountsThenReservation(t *testing.T) {
	l, _ := NewLimiter(Options{Store: NewMemoryStore()})
	pol := []*Policy{{Name: "p", DefaultOutputTokens: 40, Limits: []*Limit{
		{Name: "p/1m/total", Metric: TotalTokens, Window: Minute, Max: 1 << 40}}}}
	var d Decision
	res, _ := l.Admit(context.Background(), Identity{}, pol, Estimate{InputTokens: 11}, &d)
	meter := NewStreamBody(context.Background(), nopCloser{strings.NewReader(`data: {"choices":[{"delta":{"content":" a b c"}}]}` + "\n\n")}, res, nil)
	buf := make([]byte, 512)
	for {
		if _, err := meter.Read(buf); err != nil {
			break
		}
	}
	for _, tc := range []struct {
		name    string
		meter   *StreamBody
		usage   openai.Usage
		status  int
		in, out int64
	}{
		{"usage", nil, openai.Usage{PromptTokens: 9, CompletionTokens: 7}, 200, 9, 7},
		{"stream without usage", meter, openai.Usage{}, 200, 11, 3},
		{"non-stream without usage", nil, openai.Usage{}, 200, 11, 40},
		{"failed before output", nil, openai.Usage{}, 502, 11, 0},
		{"never sent", nil, openai.Usage{}, 0, 11, 0},
	} {
		in, out := settlement(res, tc.meter, tc.usage, tc.status)
		if in != tc.in || out != tc.out {
			t.Errorf("%s: settled %d in, %d out; want %d, %d", tc.name, in, out, tc.in, tc.out)
		}
	}
	_ = res.Settle(context.Background(), 1, 1)
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
