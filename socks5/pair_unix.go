//go:build unix

package socks5

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// pairSupported: the SOCKS5 ingress hands each stream to the router over
// an AF_UNIX socket pair.
const pairSupported = true

// socketPair returns both ends of a connected AF_UNIX stream socket pair.
func socketPair() (ours, theirs net.Conn, err error) {
	fds, err := socketpairCloexec()
	if err != nil {
		return nil, nil, err
	}
	ours, err = fileConn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	theirs, err = fileConn(fds[1])
	if err != nil {
		ours.Close()
		return nil, nil, err
	}
	return ours, theirs, nil
}

// fileConn turns fd into a net.Conn; fd itself is closed (net.FileConn
// works on a duplicate).
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "socks5-pair")
	defer f.Close()
	return net.FileConn(f)
}
