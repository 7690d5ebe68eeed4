package mux

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goroutineID is the running goroutine's number, from its stack header.
func goroutineID() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	n, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return n
}

func waitIdle(t *testing.T, w *workers, n int32) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); w.idle.Load() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers, want %d", w.idle.Load(), n)
		}
	}
}

// A connection after another runs on the goroutine the first ran on.
func TestWorkersReuseAnIdleGoroutine(t *testing.T) {
	w := newWorkers(time.Minute)
	defer w.stop()
	ids := make(chan uint64, 1)
	w.run(func() { ids <- goroutineID() })
	first := <-ids
	waitIdle(t, &w, 1)
	w.run(func() { ids <- goroutineID() })
	if second := <-ids; second != first {
		t.Errorf("the second job ran on goroutine %d, the first on %d: the idle worker was not reused", second, first)
	}
}

// A connection never waits behind another's routing: with every worker
// busy, a job gets a goroutine of its own at once.
func TestWorkersNeverQueueBehindABusyOne(t *testing.T) {
	w := newWorkers(time.Minute)
	defer w.stop()
	release := make(chan struct{})
	defer close(release)
	for range 3 {
		w.run(func() { <-release })
	}
	done := make(chan struct{})
	go w.run(func() { close(done) }) // run is the accept loop's: it must not block either
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a job waited while the other workers were busy")
	}
}

// Idle workers end after idleFor, and at once on stop; no more than
// maxIdleWorkers are kept.
func TestWorkersIdleOnesEnd(t *testing.T) {
	waitStill := func() int {
		for last, same := -1, 0; ; time.Sleep(20 * time.Millisecond) {
			g := runtime.NumGoroutine()
			if g == last {
				if same++; same == 3 {
					return g
				}
			} else {
				last, same = g, 0
			}
		}
	}
	base := waitStill()
	ended := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d goroutines, %d before", what, runtime.NumGoroutine(), base)
			}
		}
	}

	w := newWorkers(100 * time.Millisecond)
	w.run(func() {})
	waitIdle(t, &w, 1)
	ended("after the idle time")
	if n := w.idle.Load(); n != 0 {
		t.Errorf("%d idle workers counted after they ended", n)
	}

	// A burst: more at once than are kept.
	w = newWorkers(time.Minute)
	const burst = maxIdleWorkers + 20
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(burst)
	for range burst {
		w.run(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
	waitIdle(t, &w, maxIdleWorkers)
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base+maxIdleWorkers; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after a burst of %d, want at most %d kept", runtime.NumGoroutine()-base, burst, maxIdleWorkers)
		}
	}
	w.stop()
	ended("after stop")
}
