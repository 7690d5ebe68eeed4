//go:build !linux

package memtrim

// residentFraction is unknown where nexmux has no mincore(2) call.
func residentFraction([]byte) (float64, bool) { return 0, false }
