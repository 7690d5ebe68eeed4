package memtrim

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentFraction asks the kernel (mincore(2)) which of b's pages are in
// memory.
func residentFraction(b []byte) (float64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	ps := uintptr(os.Getpagesize())
	addr := uintptr(unsafe.Pointer(&b[0]))
	start := addr &^ (ps - 1)
	end := addr + uintptr(len(b))
	vec := make([]byte, (end-start+ps-1)/ps)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, start, end-start, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, false
	}
	in := 0
	for _, v := range vec {
		in += int(v & 1)
	}
	return float64(in) / float64(len(vec)), true
}
