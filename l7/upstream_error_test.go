package l7

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestUpstreamErrorStatus(t *testing.T) {
	up, err := ParseUpstreams([]string{"http://nexus:8081"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Upstreams: up, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		// Nothing listens: Nexus stopped or restarting.
		{"connection refused", fmt.Errorf("wrapped: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), http.StatusServiceUnavailable},
		{"no route", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}, http.StatusServiceUnavailable},
		// Timeouts stay 504, dialing included.
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, http.StatusGatewayTimeout},
		{"header timeout", timeoutErr{}, http.StatusGatewayTimeout},
		// Connected, then the exchange broke: a bad gateway.
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, http.StatusBadGateway},
		{"unexpected EOF", io.ErrUnexpectedEOF, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
			p.upstreamError(rec, r, tc.err)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if rec.Header().Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			var body struct {
				Errors []struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != "UNAVAILABLE" {
				t.Errorf("body %q (%v)", rec.Body, err)
			}
		})
	}
	t.Run("client gone", func(t *testing.T) {
		rec := httptest.NewRecorder()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil).WithContext(ctx)
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		p.upstreamError(rec, r, context.Canceled)
		if rec.Body.Len() != 0 || rec.Header().Get("Retry-After") != "" {
			t.Errorf("answered a client that is gone: %d %q", rec.Code, rec.Body)
		}
	})
	// Over HTTP/1 net/http would answer 200 for a handler that wrote
	// nothing: the handler aborts instead.
	t.Run("client gone over HTTP/1", func(t *testing.T) {
		rec := httptest.NewRecorder()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil).WithContext(ctx)
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
			if rec.Body.Len() != 0 || rec.Header().Get("Retry-After") != "" {
				t.Errorf("answered a client that is gone: %d %q", rec.Code, rec.Body)
			}
		}()
		p.upstreamError(rec, r, context.Canceled)
	})
}
