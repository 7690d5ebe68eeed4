package memtrim

import (
	"context"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const mib = 1 << 20

var testPolicy = Policy{Quiet: time.Second, QuietRate: mib, MinReclaim: 32 * mib}

// feed runs samples 100 ms apart through a decider and returns the times
// (ms from the start) at which it said trim.
func feed(d *Decider, samples []Sample) []int {
	start := time.Unix(1000, 0)
	var at []int
	for i, s := range samples {
		if d.Observe(start.Add(time.Duration(i)*100*time.Millisecond), s) {
			at = append(at, i*100)
		}
	}
	return at
}

// series makes n samples that allocate perTick bytes each 100 ms and hold
// the given live and free memory.
func series(n int, perTick, live, objects, free uint64) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{Allocs: uint64(i) * perTick, Live: live, Objects: objects, Free: free}
	}
	return out
}

func TestDecider(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []Sample
		want    []int // ms at which a trim is wanted
	}{
		{"quiet with much to return trims after the quiet period (and stays due until trimmed)",
			series(12, 0, 100*mib, 100*mib, 200*mib), []int{1000, 1100}},
		{"garbage allocated since the last collection counts",
			series(11, 0, 100*mib, 200*mib, 0), []int{1000}},
		{"busy never trims",
			series(30, mib/5, 100*mib, 300*mib, 300*mib), nil},
		{"a trickle below the quiet rate is quiet",
			series(11, mib/20, 100*mib, 100*mib, 200*mib), []int{1000}},
		{"too little to return: under the floor",
			series(20, 0, 8*mib, 8*mib, 31*mib), nil},
		{"too little to return: under a quarter of the live heap",
			series(20, 0, 400*mib, 400*mib, 99*mib), nil},
		{"a quarter of a large live heap is enough",
			series(11, 0, 400*mib, 400*mib, 100*mib), []int{1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := feed(NewDecider(testPolicy), tc.samples)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("trims at %v ms, want %v", got, tc.want)
			}
		})
	}
}

// A clock that goes backwards (or a counter that does) restarts the quiet
// period instead of making up a rate.
func TestDeciderBackwards(t *testing.T) {
	d := NewDecider(testPolicy)
	start := time.Unix(1000, 0)
	s := Sample{Live: 100 * mib, Objects: 100 * mib, Free: 200 * mib}
	d.Observe(start, s)
	if d.Observe(start.Add(-time.Second), s) {
		t.Fatal("trimmed on a sample from the past")
	}
	if d.Observe(start.Add(-500*time.Millisecond), s) {
		t.Fatal("the quiet period did not restart at the backwards sample")
	}
	if !d.Observe(start, s) {
		t.Fatal("no trim a quiet second after the restart")
	}
}

// A burst of allocation restarts the quiet period.
func TestDeciderBurstRestartsQuiet(t *testing.T) {
	s := series(30, 0, 100*mib, 100*mib, 200*mib)
	for i := 5; i < 30; i++ {
		s[i].Allocs += 50 * mib // one burst at 500 ms
	}
	got := feed(NewDecider(testPolicy), s)
	if len(got) == 0 || got[0] != 1500 {
		t.Fatalf("first trim at %v ms, want 1500 (a second after the burst)", got)
	}
}

// After a trim, the next needs a new quiet period and more memory to
// return than the trim left behind.
func TestDeciderAfterATrim(t *testing.T) {
	d := NewDecider(testPolicy)
	start := time.Unix(1000, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	s := Sample{Live: 100 * mib, Objects: 100 * mib, Free: 200 * mib}
	d.Observe(at(0), s)
	if !d.Observe(at(1000), s) {
		t.Fatal("no trim after a quiet second")
	}
	// The trim left 40 MiB of fragmentation it could not return.
	left := Sample{Live: 100 * mib, Objects: 100 * mib, Unused: 40 * mib}
	d.Trimmed(at(1000), left)
	if d.Observe(at(1500), s) {
		t.Fatal("trimmed again half a second after a trim")
	}
	if d.Observe(at(5000), left) {
		t.Fatal("trimmed again with only the fragmentation the last trim left")
	}
	more := left
	more.Free = 31 * mib
	if d.Observe(at(6000), more) {
		t.Fatal("trimmed with 31 MiB more than the last trim left (floor 32)")
	}
	more.Free = 32 * mib
	if !d.Observe(at(7000), more) {
		t.Fatal("no trim with 32 MiB more to return than the last trim left")
	}
}

// What the last trim left is a low-water mark: when that fragmentation goes
// away, the bar goes down with it.
func TestDeciderKeptFollowsTheLowWater(t *testing.T) {
	d := NewDecider(testPolicy)
	start := time.Unix(1000, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	d.Observe(at(0), Sample{Live: 100 * mib, Unused: 60 * mib})
	d.Trimmed(at(0), Sample{Live: 100 * mib, Objects: 100 * mib, Unused: 60 * mib})
	d.Observe(at(2000), Sample{Live: 50 * mib, Objects: 50 * mib, Unused: 5 * mib})
	if !d.Observe(at(3000), Sample{Live: 50 * mib, Objects: 50 * mib, Unused: 5 * mib, Free: 40 * mib}) {
		t.Fatal("no trim with 40 MiB free: the 60 MiB the last trim left still counts against it")
	}
}

// MinGap spaces trims under a light steady load.
func TestDeciderMinGap(t *testing.T) {
	p := testPolicy
	p.MinGap = time.Minute
	d := NewDecider(p)
	start := time.Unix(1000, 0)
	at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
	garbage := Sample{Live: 100 * mib, Objects: 100 * mib, Free: 200 * mib}
	d.Observe(at(0), garbage)
	if !d.Observe(at(1), garbage) {
		t.Fatal("first trim not due")
	}
	d.Trimmed(at(1), Sample{Live: 100 * mib, Objects: 100 * mib})
	for sec := 2; sec < 61; sec++ {
		if d.Observe(at(sec), garbage) {
			t.Fatalf("trim due %d s after the last one (MinGap 1m)", sec-1)
		}
	}
	if !d.Observe(at(61), garbage) {
		t.Fatal("no trim once MinGap has passed")
	}
}

var sink [][]byte

// garbage makes n MiB of garbage the collector has not seen yet, with the
// collector off so that neither it nor the background scavenger returns it
// before the code under test does, until the test ends.
func garbage(t *testing.T, n int) {
	t.Helper()
	runtime.GC()
	old := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	for range n {
		sink = append(sink, make([]byte, mib))
	}
	sink = nil
}

// Run returns real garbage to the OS: what a collection and a scavenge
// could return shrinks by about what was thrown away, and no free page is
// left held.
func TestRunReturnsGarbage(t *testing.T) {
	garbage(t, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type trim struct{ before, after Sample }
	got := make(chan trim, 1)
	go Run(ctx, Policy{Quiet: 50 * time.Millisecond, QuietRate: 4 * mib, MinReclaim: 16 * mib, MinGap: time.Hour}, 10*time.Millisecond, nil,
		func(b, a Sample, _ time.Duration) { got <- trim{b, a} })
	select {
	case tr := <-got:
		if tr.before.Reclaimable() < 60*mib {
			t.Fatalf("trimmed with only %d MiB reclaimable after 64 MiB of garbage", tr.before.Reclaimable()/mib)
		}
		if tr.after.Reclaimable() > tr.before.Reclaimable()-60*mib {
			t.Fatalf("reclaimable %d MiB before the trim, %d MiB after: the garbage was not returned", tr.before.Reclaimable()/mib, tr.after.Reclaimable()/mib)
		}
		if tr.after.Free > 4*mib {
			t.Fatalf("%d MiB free and still held after the trim", tr.after.Free/mib)
		}
		if tr.before.Held()-tr.after.Held() < 60*mib {
			t.Fatalf("the heap held %d MiB before the trim and %d MiB after", tr.before.Held()/mib, tr.after.Held()/mib)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no trim within 30 s of throwing away 64 MiB")
	}
}

// enabled is asked only when a trim is due, and a false answer stops it;
// turning it on (as a reload does) lets the next one through.
func TestRunEnabled(t *testing.T) {
	garbage(t, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var asked, trims atomic.Int32
	var on atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		Run(ctx, Policy{Quiet: 20 * time.Millisecond, QuietRate: 4 * mib, MinReclaim: 16 * mib}, 5*time.Millisecond,
			func() bool { asked.Add(1); return on.Load() },
			func(Sample, Sample, time.Duration) { trims.Add(1); cancel() })
	}()
	for asked.Load() < 5 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if n := trims.Load(); n != 0 {
		t.Fatalf("%d trims while disabled", n)
	}
	if asked.Load() < 5 {
		t.Fatal("a trim was never due: the test's garbage did not count")
	}
	on.Store(true)
	wg.Wait()
	if trims.Load() != 1 {
		t.Fatalf("%d trims after enabling, want 1", trims.Load())
	}
}

// The heap floor is nexmux's default GC tuning: an operator's GOGC or
// GOMEMLIMIT, any value, replaces it.
func TestFloorSizeOnlyWithoutGOGCOrGOMEMLIMIT(t *testing.T) {
	env := func(gogc, limit string) func(string) string {
		return func(k string) string {
			return map[string]string{"GOGC": gogc, "GOMEMLIMIT": limit}[k]
		}
	}
	if got := FloorSize(env("", "")); got != DefaultFloorSize || got <= 0 {
		t.Fatalf("no GOGC: floor %d, want %d", got, DefaultFloorSize)
	}
	for _, e := range [][2]string{{"100", ""}, {"50", ""}, {"off", ""}, {"", "1GiB"}, {"off", "512MiB"}} {
		if got := FloorSize(env(e[0], e[1])); got != 0 {
			t.Fatalf("GOGC=%q GOMEMLIMIT=%q: floor %d, want none", e[0], e[1], got)
		}
	}
	if f, ok := NewHeapFloor(0); ok || f == nil {
		t.Fatal("a zero-size floor must be a no-op value, not held")
	}
	f, _ := NewHeapFloor(0)
	f.Release() // safe on the no-op value
}
