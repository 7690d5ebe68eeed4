// Package memtrim keeps nexmux's heap where a proxy wants it: memory the Go
// runtime holds but no longer uses goes back to the operating system once
// the process has gone quiet (Run), and while it is busy a floor under the
// collector's goal spares it the fixed cost of collecting every few MiB
// (HeapFloor).
//
// Why a proxy needs it: most of nexmux's memory is its idle TLS connections,
// and they arrive in bursts (a CI fleet's docker clients at the top of the
// hour). A burst of handshakes leaves its garbage on the heap, the collector
// lets the heap grow to twice the live data before it runs again (GOGC=100),
// and the runtime's background scavenger returns only pages beyond about 110%
// of that goal. So a process that just accepted 10,000 connections and then
// sits quiet keeps roughly twice its live memory resident for as long as it
// stays quiet: 38 KiB
// per idle connection where the connections need 27. One forced collection
// and a full scavenge when nothing is happening costs a single GC cycle and
// leaves the resident set at the live data.
//
// The cost is kept off busy processes: a trim happens only after allocation
// has stayed below a trickle for a while, only when enough memory can be
// returned to be worth a collection (a quarter of the live heap, and at least
// a floor), and at most once per MinGap, so a small or busy process never
// trims and one under a light steady load seldom does. A trim is one full
// collection (concurrent, but requests that arrive meanwhile help mark) and
// a scavenge of the free pages; the next burst faults its pages back in.
package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Sample is the part of the runtime's memory statistics a Policy looks at.
type Sample struct {
	Allocs  uint64 // heap bytes allocated since the process started
	Live    uint64 // live heap bytes as of the last collection
	Objects uint64 // heap bytes in objects: live, plus dead ones not yet swept
	Unused  uint64 // heap bytes in spans that hold objects, but in no object
	Free    uint64 // free heap bytes not yet returned to the OS
}

// Held is the heap memory the process holds from the OS.
func (s Sample) Held() uint64 { return s.Objects + s.Unused + s.Free }

// Reclaimable estimates what a collection and a full scavenge could return:
// free pages, the unused room in partly filled spans (spans a collection
// empties are returned; the rest is fragmentation that stays, which the
// Decider learns from the last trim), and what was allocated since the last
// collection (an upper bound on the garbage the collector has not seen yet).
func (s Sample) Reclaimable() uint64 {
	r := s.Free + s.Unused
	if s.Objects > s.Live {
		r += s.Objects - s.Live
	}
	return r
}

var sampleNames = []string{
	"/gc/heap/allocs:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

// reader samples the runtime with one reusable buffer.
type reader []metrics.Sample

func newReader() reader {
	r := make(reader, len(sampleNames))
	for i, n := range sampleNames {
		r[i].Name = n
	}
	return r
}

// read samples the runtime (no stop-the-world, no allocation).
func (r reader) read() Sample {
	metrics.Read(r)
	v := func(i int) uint64 {
		if r[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return r[i].Value.Uint64()
	}
	return Sample{Allocs: v(0), Live: v(1), Objects: v(2), Unused: v(3), Free: v(4)}
}

// Read samples the runtime.
func Read() Sample { return newReader().read() }

// Policy decides when to trim.
type Policy struct {
	// Quiet is how long allocation must stay below QuietRate before a trim.
	Quiet time.Duration
	// QuietRate is the allocation rate, in bytes per second, below which
	// the process counts as quiet.
	QuietRate uint64
	// MinReclaim is the least a trim must be able to return beyond the
	// fragmentation the last one left. A trim also needs a quarter of the
	// live heap: the collection it forces costs in proportion to it.
	MinReclaim uint64
	// MinGap is the least time between two trims: under a light steady
	// load (quiet, but allocating), garbage reaches MinReclaim again and
	// again, and each trim would hand back pages the load faults back in.
	MinGap time.Duration
}

// DefaultPolicy: one second below 1 MiB/s of allocation (a Prometheus
// scrape or a few requests a second stay below it; a transfer or a burst of
// handshakes does not), at least 32 MiB to give back, and at most one trim
// every five minutes.
var DefaultPolicy = Policy{Quiet: time.Second, QuietRate: 1 << 20, MinReclaim: 32 << 20, MinGap: 5 * time.Minute}

// Decider applies a Policy to a series of samples.
type Decider struct {
	p          Policy
	started    bool
	last       Sample
	lastAt     time.Time
	quietSince time.Time
	trimmedAt  time.Time // zero: never
	// kept is the low-water mark of Reclaimable since the last trim,
	// starting at what that trim could not return (fragmentation): a
	// quiet process with nothing new to give back does not trim again,
	// and fragmentation that later goes away stops raising the bar.
	kept uint64
}

// NewDecider starts a decider for p.
func NewDecider(p Policy) *Decider { return &Decider{p: p} }

// Observe takes the sample s taken at now and reports whether to trim.
func (d *Decider) Observe(now time.Time, s Sample) bool {
	dt := now.Sub(d.lastAt)
	if !d.started || dt <= 0 || s.Allocs < d.last.Allocs {
		// First sample, or a clock or counter that went backwards:
		// start over rather than guess a rate.
		d.reset(now, s)
		return false
	}
	if float64(s.Allocs-d.last.Allocs) > float64(d.p.QuietRate)*dt.Seconds() {
		d.quietSince = now
	}
	d.last, d.lastAt = s, now
	r := s.Reclaimable()
	d.kept = min(d.kept, r)
	if now.Sub(d.quietSince) < d.p.Quiet {
		return false
	}
	if !d.trimmedAt.IsZero() && now.Sub(d.trimmedAt) < d.p.MinGap {
		return false
	}
	return r-d.kept >= max(d.p.MinReclaim, s.Live/4)
}

// Trimmed tells the decider a trim ended at now leaving s: the next trim
// needs another quiet period, MinGap, and MinReclaim more memory to return
// than this one could not.
func (d *Decider) Trimmed(now time.Time, s Sample) {
	d.reset(now, s)
	d.trimmedAt = now
	d.kept = s.Reclaimable()
}

// reset restarts the quiet period at now with s as the latest sample.
func (d *Decider) reset(now time.Time, s Sample) {
	d.started = true
	d.last, d.lastAt, d.quietSince = s, now, now
}

// Done reports one trim: the samples around it and how long it took.
type Done func(before, after Sample, took time.Duration)

// Run samples the runtime every interval until ctx ends and trims (two forced
// collections, then every free page back to the OS) when the policy says so
// and enabled (nil: always) allows it. A trim that is due but not enabled
// waits for another quiet period, so enabled is asked at most once per one.
func Run(ctx context.Context, p Policy, interval time.Duration, enabled func() bool, done Done) {
	t := time.NewTicker(interval)
	defer t.Stop()
	d := NewDecider(p)
	r := newReader()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := r.read()
		start := time.Now()
		if !d.Observe(start, s) {
			continue
		}
		if enabled != nil && !enabled() {
			d.reset(start, s)
			continue
		}
		// Two collections: the first moves sync.Pool contents (net/http's
		// buffers of released idle connections among them) to the pools'
		// victim caches, the second, inside FreeOSMemory, frees them.
		runtime.GC()
		debug.FreeOSMemory()
		after := r.read()
		end := time.Now()
		d.Trimmed(end, after)
		if done != nil {
			done(s, after, end.Sub(start))
		}
	}
}

// HeapFloor is heap the process holds but does not write: it raises the
// collector's heap goal (twice the live heap at GOGC=100) by twice its size
// without, normally, using memory. Why a proxy wants it: nexmux's own live
// heap is a few MiB, so at the runtime's 4 MiB minimum goal it collects
// every few MiB of allocation, and every cycle pays fixed costs
// (stop-the-world phases, scanning every connection's goroutine stack) that
// the handshakes and small requests it serves wait behind. With a 16 MiB
// floor the goal is ~35 MiB and a cycle comes every ~16 MiB plus the live
// heap of allocation (its measured effect: docs/bench/notes.md). Resident memory
// grows by the garbage allowed to wait longer (up to about the floor's
// size, until the next collection), not by the block: a large allocation
// of pages the runtime has never handed out is not zeroed, so they are never
// touched. Pages it has handed out before are zeroed (or still resident),
// and then the block is resident; NewHeapFloor asks the OS (mincore) and
// gives such a block back.
type HeapFloor struct {
	b []byte
}

// DefaultFloorSize is the heap floor nexmux holds.
const DefaultFloorSize = 16 << 20

// FloorSize is the heap floor to hold given the environment: none when
// GOGC or GOMEMLIMIT is set, since an operator who tuned the collector gets
// exactly that tuning (and a memory limit would count the floor as in use).
func FloorSize(getenv func(string) string) int {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return 0
	}
	return DefaultFloorSize
}

// NewHeapFloor holds n bytes of heap until Release. ok is false when the
// block is resident (the runtime reused pages for it: it zeroes those, or
// they were resident already), and then nothing is held. Where the OS cannot
// tell (not Linux) the block is held.
func NewHeapFloor(n int) (f *HeapFloor, ok bool) {
	if n <= 0 {
		return &HeapFloor{}, false
	}
	f = &HeapFloor{b: make([]byte, n)}
	if frac, known := residentFraction(f.b); known && frac > 0.5 {
		f.Release()
		return f, false
	}
	return f, true
}

// Release lets the collector have the block. Until it is called the
// HeapFloor must stay reachable: a floor nothing refers to any more is
// garbage like any other block.
func (f *HeapFloor) Release() { f.b = nil }
