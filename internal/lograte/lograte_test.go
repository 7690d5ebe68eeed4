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
