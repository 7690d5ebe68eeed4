package daemon

import "testing"

// The heap floor is nexmux's default GC tuning: an operator's GOGC, any
// value, replaces it.
func TestHeapFloorOnlyWithoutGOGC(t *testing.T) {
	if got := heapFloorSize(""); got != HeapFloorSize || got <= 0 {
		t.Fatalf("no GOGC: floor %d, want %d", got, HeapFloorSize)
	}
	for _, v := range []string{"100", "50", "off"} {
		if got := heapFloorSize(v); got != 0 {
			t.Fatalf("GOGC=%s: floor %d, want none", v, got)
		}
	}
}
