package telemetry

import (
	"context"
	"log/slog"

	"github.com/igw-dev/igw/pkg/director"
)

// AccessLogMessage is the message of every access log record, so a log
// pipeline can select them.
const AccessLogMessage = "access"

// EnableAccessLog turns on the access log: one record per request at Info
// level on log (igw's JSON logger), written when the request completes,
// with its id, model, target model, objective, tenant, endpoint, status,
// time to first token, time in admission, duration, tokens and retries. It is off unless
// asked for (igw serve and igw epp --access-log): at high request rates a
// record per request is a cost not every operator wants. Call it before
// serving.
func (m *Metrics) EnableAccessLog(log *slog.Logger) { m.accessLog = log }

// logAccess writes c's access log record.
func (m *Metrics) logAccess(c *director.Completion) {
	attrs := []slog.Attr{
		slog.String("request_id", c.ID),
		slog.String("model", c.Model),
		slog.String("target_model", c.TargetModel),
		slog.String("objective", c.Objective),
		slog.String("tenant", c.Tenant),
		slog.String("pool", c.Pool),
		slog.String("endpoint", c.Endpoint),
		slog.Int("status", c.Status),
		slog.Float64("ttft_seconds", c.TTFT.Seconds()),
		slog.Float64("queue_seconds", c.Queued.Seconds()),
		slog.Float64("duration_seconds", c.Took.Seconds()),
		slog.Int("input_tokens", c.InputTokens),
		slog.Int("output_tokens", c.OutputTokens),
		slog.Int("cached_tokens", c.CachedTokens),
		slog.Int("retries", c.Retries),
		slog.Bool("stream", c.Streamed),
		slog.Int64("request_bytes", c.RequestBytes),
		slog.Int64("response_bytes", c.ResponseBytes),
	}
	if c.Reason != "" {
		attrs = append(attrs, slog.String("dropped_reason", c.Reason))
	}
	m.accessLog.LogAttrs(context.Background(), slog.LevelInfo, AccessLogMessage, attrs...)
}
