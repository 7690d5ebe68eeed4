package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The access line's own formatter writes byte for byte what slog's text and
// JSON handlers write for the same attributes, for hostile values too
// (every ASCII byte, invalid UTF-8, Unicode spaces and separators, quotes,
// '=' and empty strings).
func TestAccessLineMatchesSlog(t *testing.T) {
	var ascii strings.Builder
	for c := 0; c < 128; c++ {
		ascii.WriteByte(byte(c))
	}
	values := []string{
		"", "team-a", "/v2/app/manifests/latest", "a b", "a=b", `q"uote`, `back\slash`, "tab\there",
		"new\nline", "\x00\x1f\x7f", "caf\u00e9", "\u00a0nbsp", "\u2028\u2029", "bad\xffutf8", "\xc3",
		"<html>&amp;", "日本語", "\u200b", ascii.String(),
	}
	durations := []time.Duration{0, 999, time.Microsecond, 1500 * time.Microsecond, 2*time.Second + 7*time.Millisecond,
		90 * time.Minute, 3*time.Hour + time.Nanosecond}
	times := []time.Time{
		time.Date(2026, 12, 2, 22, 10, 5, 0, time.UTC),
		time.Date(2026, 12, 2, 22, 10, 5, 999999999, time.FixedZone("x", 5*3600+1800)),
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.Local),
		// the first one's second again (the formatted second is reused)
		time.Date(2026, 12, 2, 22, 10, 5, 1, time.UTC),
		time.Date(2026, 12, 2, 22, 10, 5, 500000000, time.UTC),
		// the same instant in another zone, and the next second
		time.Date(2026, 12, 2, 22, 10, 5, 500000000, time.UTC).In(time.FixedZone("y", -7*3600)),
		time.Date(2026, 12, 2, 22, 10, 6, 12345000, time.UTC),
	}
	var lines []accessLine
	for i, v := range values {
		lines = append(lines, accessLine{
			route: v, repo: values[(i+1)%len(values)], method: "HEAD", path: values[(i+2)%len(values)],
			status: 100 + i*37, bytesIn: int64(i) << 40, bytesOut: -int64(i), duration: durations[i%len(durations)],
			client: "192.0.2.1:50000", registry: values[(i+3)%len(values)], reason: v,
		})
	}
	lines = append(lines, accessLine{route: "r", method: "GET", path: "/v2/", status: 200, client: "invalid AddrPort"})
	for _, format := range []string{"text", "json"} {
		for i, l := range lines {
			tm := times[i%len(times)]
			var want bytes.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelInfo}
			var sh slog.Handler = slog.NewTextHandler(&want, opts)
			if format == "json" {
				sh = slog.NewJSONHandler(&want, opts)
			}
			rec := slog.NewRecord(tm, slog.LevelInfo, "request", 0)
			rec.AddAttrs(l.attrs()...)
			if err := sh.Handle(context.Background(), rec); err != nil {
				t.Fatal(err)
			}
			h := &accessHandler{Handler: sh, json: format == "json"}
			got := h.appendLine(nil, tm, &l)
			if string(got) != want.String() {
				t.Errorf("%s line %d:\n got %q\nwant %q", format, i, got, want.String())
			}
		}
	}
}

// The daemon's access logger writes through the formatter, and any line
// logged with its Logger still goes through slog.
func TestNewLoggersAccessHandler(t *testing.T) {
	out := &syncBuffer{}
	lw := NewLogWriter(out, time.Hour)
	_, access := NewLoggers(lw, "text", "info")
	h, ok := access.Handler().(*accessHandler)
	if !ok {
		t.Fatalf("access handler is %T", access.Handler())
	}
	h.write(time.Now(), &accessLine{route: "r", method: "GET", path: "/v2/", status: 200, client: "192.0.2.1:1"})
	access.Info("other", "k", "v")
	if err := lw.Flush(); err != nil {
		t.Fatal(err)
	}
	got, _ := out.snapshot()
	if !strings.Contains(got, "msg=request route=r repo=\"\" method=GET path=/v2/ status=200") || !strings.Contains(got, "msg=other k=v") {
		t.Fatalf("log: %q", got)
	}
	_, quiet := NewLoggers(lw, "json", "warn")
	if quiet.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("access logger at warn is enabled for info")
	}
}

// BenchmarkAccessLine is one request's access line: slog's handler against
// the formatter, both writing to a LogWriter.
func BenchmarkAccessLine(b *testing.B) {
	l := accessLine{route: "team-a.example.com", repo: "team-a", method: "HEAD", path: "/v2/app/manifests/latest",
		status: 200, bytesOut: 528, duration: 1234 * time.Microsecond, client: "192.0.2.1:50000"}
	for _, format := range []string{"text", "json"} {
		lw := NewLogWriter(discard{}, time.Hour)
		_, access := NewLoggers(lw, format, "info")
		b.Run(format+"/slog", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				access.LogAttrs(context.Background(), slog.LevelInfo, "request", l.attrs()...)
			}
		})
		h := access.Handler().(*accessHandler)
		b.Run(format+"/formatter", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.write(time.Now(), &l)
			}
		})
		lw.Close()
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
