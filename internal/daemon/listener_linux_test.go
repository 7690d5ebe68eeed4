package daemon_test

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// reusePortRefused: even a socket that asks for SO_REUSEPORT cannot
// share the address, because nexmux's own listener did not ask for it (two
// processes with SO_REUSEPORT would split the handshakes between them).
func reusePortRefused(t *testing.T, addr string) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err == nil {
		ln.Close()
		t.Fatalf("an SO_REUSEPORT listener bound %s beside nexmux", addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("SO_REUSEPORT bind of %s: %v, want EADDRINUSE", addr, err)
	}
}
