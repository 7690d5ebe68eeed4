package lograte

import (
	"sync"
	"testing"
)

// A burst logs once, and that line counts the whole burst up to it; the
// rest wait for the next second, and no event is lost from the counts.
func TestBurstIsOneLine(t *testing.T) {
	var l Limiter
	var mu sync.Mutex
	lines, counted := 0, int64(0)
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, n := l.Note(); ok {
				mu.Lock()
				lines++
				counted += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if lines != 1 {
		t.Fatalf("%d lines for a burst of 100, want 1", lines)
	}
	if pending := l.n.Load(); counted+pending != 100 || counted < 1 {
		t.Fatalf("line counted %d, %d pending: want 100 in all", counted, pending)
	}
}

func TestBurstLogsMaxThenCounts(t *testing.T) {
	b := Burst{Max: 3}
	lines := 0
	for range 10 {
		if ok, _ := b.Note(); ok {
			lines++
		}
	}
	if lines != 3 && lines != 6 { // a second may begin during the loop
		t.Fatalf("%d lines for 10 events, want 3 a second", lines)
	}
	b.sec-- // the next second
	ok, dropped := b.Note()
	if !ok || dropped == 0 || int64(lines)+dropped != 10 {
		t.Fatalf("next second: log %v, %d unlogged after %d lines; want the 10 accounted for", ok, dropped, lines)
	}
}
