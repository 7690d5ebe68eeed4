package daemon

import "testing"

// The heap floor is nexmux's default GC tuning: an operator's GOGC or
// GOMEMLIMIT, any value, replaces it.
func TestHeapFloorOnlyWithoutGOGCOrGOMEMLIMIT(t *testing.T) {
	if got := heapFloorSize("", ""); got != HeapFloorSize || got <= 0 {
		t.Fatalf("no GOGC: floor %d, want %d", got, HeapFloorSize)
	}
	for _, env := range [][2]string{{"100", ""}, {"50", ""}, {"off", ""}, {"", "1GiB"}, {"off", "512MiB"}} {
		if got := heapFloorSize(env[0], env[1]); got != 0 {
			t.Fatalf("GOGC=%q GOMEMLIMIT=%q: floor %d, want none", env[0], env[1], got)
		}
	}
}
