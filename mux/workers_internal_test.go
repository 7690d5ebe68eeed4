package mux

import (
	"bytes"
	"fmt"
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

// goroutineAlive reports whether goroutine id has not ended.
func goroutineAlive(id uint64) bool {
	b := make([]byte, 1<<20)
	b = b[:runtime.Stack(b, true)]
	return bytes.Contains(b, fmt.Appendf(nil, "goroutine %d [", id))
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
	job := func() { ids <- goroutineID() }
	// A worker is counted idle just before it waits: a job run in
	// between gets a goroutine of its own, so a miss is tried again.
	seen := map[uint64]bool{}
	for range 20 {
		w.run(job)
		id := <-ids
		if seen[id] {
			return
		}
		seen[id] = true
		waitIdle(t, &w, int32(len(seen)))
	}
	t.Fatalf("20 jobs ran on %d goroutines: an idle worker was never reused", len(seen))
}

type retained struct{ _ [1 << 16]byte }

// An idle worker keeps nothing of its last job: not the connection, not
// its TLS state.
func TestWorkersKeepNothingOfTheLastJob(t *testing.T) {
	w := newWorkers(time.Minute)
	defer w.stop()
	done := make(chan struct{}, 1)
	w.run(func() { done <- struct{}{} })
	<-done
	waitIdle(t, &w, 1)
	time.Sleep(10 * time.Millisecond) // most likely waiting on jobs now: the channel's hand-over is tried too
	freed := make(chan struct{})
	func() {
		x := new(retained)
		runtime.AddCleanup(x, func(chan struct{}) { close(freed) }, freed)
		w.run(func() { runtime.KeepAlive(x); done <- struct{}{} })
		<-done
	}()
	for range 50 {
		runtime.GC()
		select {
		case <-freed:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("an idle worker keeps its last job alive")
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
		deadline := time.Now().Add(10 * time.Second)
		for last, same := -1, 0; ; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the goroutine count never held still: %d", runtime.NumGoroutine())
			}
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

	const idleFor = 100 * time.Millisecond
	w := newWorkers(idleFor)
	defer w.stop()
	var jobEnd time.Time
	var id uint64
	done := make(chan struct{})
	// The job's own clock and goroutine, not the goroutine count: a worker
	// that waited idleFor ended no sooner than idleFor after its job,
	// however late this goroutine runs and whatever else ends meanwhile.
	w.run(func() { id, jobEnd = goroutineID(), time.Now(); close(done) })
	<-done
	for deadline := time.Now().Add(10 * time.Second); goroutineAlive(id); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("an idle worker still there %v after its job, idle time %v", time.Since(jobEnd), idleFor)
		}
	}
	if d := time.Since(jobEnd); d < idleFor {
		t.Errorf("the worker ended %v after its job, before its idle time of %v", d, idleFor)
	}
	if n := w.idle.Load(); n != 0 {
		t.Errorf("%d idle workers counted after they ended", n)
	}

	// A burst: more at once than are kept.
	b := newWorkers(time.Minute)
	defer b.stop()
	const burst = maxIdleWorkers + 20
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(burst)
	for range burst {
		b.run(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
	waitIdle(t, &b, maxIdleWorkers)
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base+maxIdleWorkers; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after a burst of %d, want at most %d kept", runtime.NumGoroutine()-base, burst, maxIdleWorkers)
		}
	}
	b.stop()
	ended("after stop")
}
