package director

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/igw-dev/igw/pkg/openai"
)

// Latency-objective request headers (REFERENCE §8): whole milliseconds.
const (
	HeaderSLOTTFT = "X-Slo-Ttft-Ms"
	HeaderSLOTPOT = "X-Slo-Tpot-Ms"
)

// maxObjective bounds a latency objective; anything longer is not a
// latency objective but a mistake (a value in microseconds, say).
const maxObjective = time.Hour

// latencyObjectives reads the request's latency objectives. A value that
// is not a whole number of milliseconds in 1..3,600,000 is the client's
// mistake and answered 400 rather than ignored, so a typo does not
// silently drop the objective.
func latencyObjectives(h http.Header) (ttft, tpot time.Duration, e *openai.Error) {
	for _, f := range []struct {
		name string
		to   *time.Duration
	}{{HeaderSLOTTFT, &ttft}, {HeaderSLOTPOT, &tpot}} {
		v := h.Get(f.name)
		if v == "" {
			continue
		}
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 1 || ms > maxObjective.Milliseconds() {
			return 0, 0, openai.NewError(http.StatusBadRequest, openai.ErrTypeInvalidRequest,
				fmt.Sprintf("header %s must be a whole number of milliseconds from 1 to %d, got %s",
					f.name, maxObjective.Milliseconds(), openai.Echo(v)))
		}
		*f.to = time.Duration(ms) * time.Millisecond
	}
	return ttft, tpot, nil
}

// retryAfter is a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(d.Seconds()))), 10)
}
