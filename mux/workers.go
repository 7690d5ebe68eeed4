package mux

import (
	"sync"
	"sync/atomic"
	"time"
)

// workers runs each connection's routing phase (the ClientHello peek, the
// TLS handshake) on a goroutine kept from an earlier connection where one
// is idle, else on a new one: a connection never waits for a worker. A new
// goroutine's stack starts small and the handshake runs deep (crypto's
// signing and key exchange), so the runtime grows and copies it several
// times for every new connection; a kept goroutine has grown already.
type workers struct {
	jobs     chan func() // unbuffered: only an idle worker takes a job
	idleFor  time.Duration
	quit     chan struct{}
	stopOnce sync.Once
	// idle counts the workers waiting for a job, each from just before
	// it waits: a job run then gets a new goroutine, it never waits.
	idle atomic.Int32
}

const (
	// maxIdleWorkers bounds the goroutines kept waiting, each with its
	// grown stack (which every GC cycle halves while it waits).
	maxIdleWorkers = 64
	// workerIdle is how long a worker waits for another connection: a
	// burst's workers do not outlive it for long.
	workerIdle = 2 * time.Second
)

func newWorkers(idleFor time.Duration) workers {
	return workers{jobs: make(chan func()), idleFor: idleFor, quit: make(chan struct{})}
}

// run runs job on an idle worker, or on a new goroutine.
func (w *workers) run(job func()) {
	select {
	case w.jobs <- job:
	default:
		go w.work(job)
	}
}

func (w *workers) work(job func()) {
	var t *time.Timer
	for {
		job()
		job = nil // not kept alive while waiting; still nil unless one comes
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(w.idleFor)
		} else {
			t.Reset(w.idleFor)
		}
		select {
		case job = <-w.jobs:
		case <-t.C:
		case <-w.quit:
		}
		w.idle.Add(-1)
		if job == nil { // its time is up, or the server's
			return
		}
	}
}

// stop ends the idle workers; a worker at work ends after its job.
func (w *workers) stop() { w.stopOnce.Do(func() { close(w.quit) }) }
