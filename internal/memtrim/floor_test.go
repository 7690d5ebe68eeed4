//go:build linux

package memtrim

import (
	"os"
	"runtime"
	"runtime/metrics"
	"testing"

	"golang.org/x/sys/unix"
)

func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// A heap floor raises the collector's goal by about twice its size, and
// Release gives the goal back. (Whether it is resident is the allocator's
// call; the tests below check NewHeapFloor's answer to that.)
func TestHeapFloorRaisesTheGoal(t *testing.T) {
	runtime.GC()
	goal0 := heapGoal()
	f := &HeapFloor{b: make([]byte, 64*mib)}
	runtime.GC()
	if goal1 := heapGoal(); goal1 < goal0+100*mib {
		t.Fatalf("heap goal %d MiB before a 64 MiB floor, %d MiB with it", goal0/mib, goal1/mib)
	}
	// Without -race the compiler may keep f in registers and drop the
	// slice before the collection above; this keeps it reachable there.
	runtime.KeepAlive(f)
	f.Release()
	runtime.GC()
	if goal2 := heapGoal(); goal2 > goal0+32*mib {
		t.Fatalf("heap goal %d MiB after Release, %d MiB before the floor", goal2/mib, goal0/mib)
	}
}

// residentFraction sees which pages are in memory: none of a fresh
// mapping, half once half is written.
func TestResidentFraction(t *testing.T) {
	const n = 8 * mib
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer unix.Munmap(b)
	frac, ok := residentFraction(b)
	if !ok {
		t.Skip("mincore not available here")
	}
	if frac != 0 {
		t.Fatalf("fresh mapping %.2f resident, want 0", frac)
	}
	for i := 0; i < n/2; i += os.Getpagesize() {
		b[i] = 1
	}
	if frac, _ = residentFraction(b); frac < 0.49 || frac > 0.51 {
		t.Fatalf("half-written mapping %.2f resident, want 0.5", frac)
	}
}

var reused []byte

// Whatever the allocator does, NewHeapFloor holds a block only when it is
// not resident: here the heap has just freed 64 MiB of written pages, which
// the runtime may hand out again for the floor.
func TestHeapFloorNeverHoldsResidentMemory(t *testing.T) {
	if _, ok := residentFraction(make([]byte, 1)); !ok {
		t.Skip("mincore not available here")
	}
	reused = make([]byte, 64*mib)
	for i := range reused {
		reused[i] = 1
	}
	reused = nil
	runtime.GC()
	f, ok := NewHeapFloor(48 * mib)
	if !ok {
		if f.b != nil {
			t.Fatal("NewHeapFloor said no but holds the block")
		}
		return
	}
	defer f.Release()
	if frac, _ := residentFraction(f.b); frac > 0.5 {
		t.Fatalf("NewHeapFloor holds a block %.0f%% resident", 100*frac)
	}
}
