package daemon

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer records each write to the output separately.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.buf.Write(p)
}

func (s *syncBuffer) snapshot() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String(), s.writes
}

// Access lines go out together; an operational line goes out at once and
// after the access lines logged before it; Flush writes what is pending.
func TestLogWriterBatchesAccessLinesInOrder(t *testing.T) {
	out := &syncBuffer{}
	lw := NewLogWriter(out, time.Hour) // only Flush or an immediate line writes
	log, access := NewLoggers(lw, "text", "info")
	for i := range 100 {
		access.Info("request", "n", i)
	}
	if got, w := out.snapshot(); w != 0 || got != "" {
		t.Fatalf("access lines written before their delay: %d writes", w)
	}
	log.Warn("upstream down")
	got, w := out.snapshot()
	if w != 1 {
		t.Fatalf("%d writes for 100 access lines and a warning, want 1", w)
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 101 || !strings.Contains(lines[0], "n=0") || !strings.Contains(lines[99], "n=99") || !strings.Contains(lines[100], "upstream down") {
		t.Fatalf("lines out of order or lost:\n%s", got)
	}
	access.Info("request", "n", "last")
	if err := lw.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.snapshot(); !strings.HasSuffix(got, "n=last\n") {
		t.Fatalf("Flush did not write the pending line:\n%s", got)
	}
}

// After Close (at exit) nothing waits: a line logged by a handler still
// finishing is written at once.
func TestLogWriterCloseWritesThrough(t *testing.T) {
	out := &syncBuffer{}
	lw := NewLogWriter(out, time.Hour)
	_, access := NewLoggers(lw, "text", "info")
	access.Info("request", "n", 1)
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.snapshot(); !strings.Contains(got, "n=1") {
		t.Fatalf("Close did not write the pending line: %q", got)
	}
	access.Info("request", "n", 2)
	if got, _ := out.snapshot(); !strings.Contains(got, "n=2") {
		t.Fatalf("a line after Close waited: %q", got)
	}
}

// A lone access line is written within the delay, without a Flush.
func TestLogWriterDelayBoundsTheWait(t *testing.T) {
	out := &syncBuffer{}
	lw := NewLogWriter(out, 20*time.Millisecond)
	_, access := NewLoggers(lw, "json", "info")
	access.Info("request", "path", "/v2/")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := out.snapshot(); strings.Contains(got, `"path":"/v2/"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("access line never written without a Flush")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A burst larger than the buffer is written as it fills, not held.
func TestLogWriterBufferBound(t *testing.T) {
	out := &syncBuffer{}
	lw := NewLogWriter(out, time.Hour)
	line := strings.Repeat("x", 1000) + "\n"
	n := 3 * accessLogBuffer / len(line)
	for range n {
		_, _ = lw.Write([]byte(line))
	}
	got, w := out.snapshot()
	if w < 2 || len(got) < 2*accessLogBuffer {
		t.Fatalf("%d bytes in %d writes after %d bytes logged", len(got), w, n*len(line))
	}
	if len(got)%len(line) != 0 {
		t.Fatal("a line was split across writes")
	}
}

// Lines from many goroutines are neither lost nor torn.
func TestLogWriterConcurrent(t *testing.T) {
	out := &syncBuffer{}
	lw := NewLogWriter(out, time.Millisecond)
	log, access := NewLoggers(lw, "text", "info")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if i%100 == 0 {
					log.Info("reload", "g", g, "i", i)
				} else {
					access.Info("request", "g", g, "i", i)
				}
			}
		}()
	}
	wg.Wait()
	_ = lw.Flush()
	got, _ := out.snapshot()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var g, i int
		if _, err := fmt.Sscanf(l[strings.Index(l, " g=")+1:], "g=%d i=%d", &g, &i); err != nil {
			t.Fatalf("torn line %q", l)
		}
		seen[fmt.Sprint(g, i)] = true
	}
	if len(seen) != 8*500 {
		t.Fatalf("%d distinct lines, want %d", len(seen), 8*500)
	}
}
