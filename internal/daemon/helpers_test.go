package daemon_test

// Helpers shared by the feature tests of this package: a stack whose log
// lines the test reads, and waiting for a connection to close.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// segmentSize is one Ethernet TCP segment's payload with timestamps: a
// ClientHello larger than this cannot arrive in one packet.
const segmentSize = 1448

// logStack starts a stack whose log lines land in the returned buffer.
func logStack(t *testing.T, cfg config.Config) (*stack.Stack, *logBuffer) {
	t.Helper()
	return logStackWith(t, stack.Options{Config: cfg})
}

// logStackWith is logStack with more of the stack's options (its Logger is
// set here).
func logStackWith(t *testing.T, o stack.Options) (*stack.Stack, *logBuffer) {
	t.Helper()
	return hookedLogStack(t, o, nil)
}

// hookedLogStack is logStackWith whose logger runs hook, if not nil, on
// each record before taking it (beforeRecord).
func hookedLogStack(t *testing.T, o stack.Options, hook func(slog.Record)) (*stack.Stack, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	var h slog.Handler = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	if hook != nil {
		h = beforeRecord{h, hook}
	}
	o.Logger = slog.New(h)
	st := stack.Start(t, o)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nexmux log:\n%s", logs.String())
		}
	})
	return st, logs
}

// logLines returns the log lines holding every part.
func logLines(logs *logBuffer, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(logs.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// waitLog waits up to five seconds for a log line holding every part
// and returns it.
func waitLog(t *testing.T, logs *logBuffer, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ls := logLines(logs, parts...); len(ls) > 0 {
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", parts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readUntilClosed reads from c until it fails and reports what came back. It
// fails the test when c is still open after limit.
func readUntilClosed(t *testing.T, c net.Conn, limit time.Duration) (got []byte, elapsed time.Duration) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	got, err := io.ReadAll(c)
	elapsed = time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (read %q)", limit, got)
	}
	return got, elapsed
}

// serveDaemon starts d and shuts it down (5 s at most) when tb ends.
func serveDaemon(tb testing.TB, d *daemon.Daemon) {
	tb.Helper()
	if err := d.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	})
}

// configFile is a config file in a fresh directory and a function that
// writes it.
func configFile(t *testing.T) (file string, write func(string)) {
	file = filepath.Join(t.TempDir(), "nexmux.yaml")
	return file, func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitListenerClosed waits until addr refuses connections: a drain closes
// the listener at its start, so the drain is then under way.
func waitListenerClosed(t *testing.T, what, addr string) {
	t.Helper()
	waitFor(t, what, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// beforeRecord runs hook on each record before the handler takes it, in
// the goroutine that logs: a hook that waits holds that log call, and that
// call alone.
type beforeRecord struct {
	slog.Handler
	hook func(slog.Record)
}

func (h beforeRecord) Handle(ctx context.Context, r slog.Record) error {
	h.hook(r)
	return h.Handler.Handle(ctx, r)
}

func (h beforeRecord) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

func (h beforeRecord) WithGroup(name string) slog.Handler {
	h.Handler = h.Handler.WithGroup(name)
	return h
}
