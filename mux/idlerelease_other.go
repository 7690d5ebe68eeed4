//go:build !unix

package mux

import (
	"errors"
	"net"
)

// Elsewhere idle connections are not released (setupRelease), and
// net/http's read ahead takes its usual path (h1Conn.Read).
const canPeek = false

type peeker struct{}

func (*peeker) setup(*net.TCPConn) error {
	return errors.New("mux: waiting for a readable socket needs unix")
}

func (*peeker) ready() bool { return false }

func (*peeker) wait() (bool, error) {
	return false, errors.New("mux: waiting for a readable socket needs unix")
}
