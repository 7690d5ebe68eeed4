//go:build unix

package testnet

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// claim holds port p against FreePort in other test processes until t
// ends: an exclusive flock on a file named for the port. The kernel drops
// it when the process dies, so a crashed test leaves nothing behind.
func claim(t testing.TB, p int) bool {
	dir := filepath.Join(os.TempDir(), "nexmux-testports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true // no shared place: the probe alone decides
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	t.Cleanup(func() { f.Close() })
	return true
}
