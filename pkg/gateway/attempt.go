package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// attempt is one try of a request on one endpoint. It bounds the two
// waits a model server can make a request sit through without sending a
// byte — opening the connection, and from the request written to the
// response headers (a stopped process still accepts and acknowledges) —
// by cancelling its own context, so the forwarding loop can move on to
// another endpoint while the client has seen nothing.
type attempt struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	timer    *time.Timer
	armed    uint64 // which arming the running timer belongs to
	sent     bool   // the whole request was written: the server may have started on it
	timedOut string // the phase whose timeout fired ("connect", "first_byte"), or ""
	limit    time.Duration
}

// newAttempt starts an attempt under parent, whose connection must be
// open within connect and whose response headers must arrive within
// firstByte of the request written (0: no bound of its own).
func newAttempt(parent context.Context, connect, firstByte time.Duration) *attempt {
	a := &attempt{}
	ctx, cancel := context.WithCancel(parent)
	a.cancel = cancel
	a.arm("connect", connect)
	trace := &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { a.disarm() },
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			a.mu.Lock()
			a.sent = info.Err == nil
			a.mu.Unlock()
			if info.Err == nil {
				a.arm("first_byte", firstByte)
			}
		},
		GotFirstResponseByte: func() { a.disarm() },
	}
	a.ctx = httptrace.WithClientTrace(ctx, trace)
	return a
}

// arm starts the timeout of phase (replacing any other); d <= 0 arms
// nothing.
func (a *attempt) arm(phase string, d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if d <= 0 || a.timedOut != "" {
		return
	}
	a.armed++
	armed := a.armed
	a.timer = time.AfterFunc(d, func() {
		a.mu.Lock()
		if a.armed != armed || a.timer == nil { // re-armed or disarmed in the meantime
			a.mu.Unlock()
			return
		}
		a.timedOut, a.limit = phase, d
		a.mu.Unlock()
		a.cancel()
	})
}

func (a *attempt) disarm() { a.arm("", 0) }

// outcome is what became of the attempt: the phase that timed out ("" for
// none) and whether the request was written whole.
func (a *attempt) outcome() (timedOut string, limit time.Duration, sent bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.timedOut, a.limit, a.sent
}

// end releases the attempt's context: after its response was relayed, or
// when it is abandoned.
func (a *attempt) end() {
	a.disarm()
	a.cancel()
}

// errAttemptTimeout is an attempt abandoned because the endpoint did not
// connect or answer in time. It wraps context.DeadlineExceeded, so a last
// attempt answers the client 504.
type errAttemptTimeout struct {
	phase string
	limit time.Duration
}

func (e *errAttemptTimeout) Error() string {
	if e.phase == "connect" {
		return fmt.Sprintf("no connection within %s", e.limit)
	}
	return fmt.Sprintf("no response headers within %s of the request", e.limit)
}

func (e *errAttemptTimeout) Unwrap() error { return context.DeadlineExceeded }

// noReplay keeps Go's transport from sending a request a second time on
// its own: it resends a POST that carries an Idempotency-Key (or
// X-Idempotency-Key) header when a reused connection breaks after the
// request was written, which for an inference request means running it
// twice behind the gateway's back. The header still reaches the model
// server, under its lower-case name (HTTP/1.1 names are case-insensitive),
// which the transport's check does not look for. Retries are the
// forwarding loop's alone, under the route's bounds.
func noReplay(h http.Header) {
	for _, k := range []string{"Idempotency-Key", "X-Idempotency-Key"} {
		if v, ok := h[k]; ok {
			delete(h, k)
			h[strings.ToLower(k)] = v
		}
	}
}
