package director

import (
	"fmt"
	"net/http"
	"time"

	"github.com/igw-dev/igw/api/v1alpha2"
	"github.com/igw-dev/igw/pkg/openai"
)

// Latency-objective request headers (REFERENCE §8): whole milliseconds.
const (
	HeaderSLOTTFT = "X-Slo-Ttft-Ms"
	HeaderSLOTPOT = "X-Slo-Tpot-Ms"
)

// latencyObjectives reads the request's latency objectives. A value
// v1alpha2.ParseLatencyObjective refuses is the client's mistake and
// answered 400 rather than ignored, so a typo does not silently drop the
// objective.
func latencyObjectives(h http.Header) (ttft, tpot time.Duration, e *openai.Error) {
	for _, f := range []struct {
		name string
		to   *time.Duration
	}{{HeaderSLOTTFT, &ttft}, {HeaderSLOTPOT, &tpot}} {
		v := h.Get(f.name)
		if v == "" {
			continue
		}
		d, err := v1alpha2.ParseLatencyObjective(v)
		if err != nil {
			return 0, 0, openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest,
				fmt.Sprintf("header %s: must be a whole number of milliseconds from 1 to %d, got %s",
					f.name, v1alpha2.MaxLatencyObjective.Milliseconds(), openai.Echo(v)))
		}
		*f.to = d
	}
	return ttft, tpot, nil
}
