//go:build !unix

package mux

import (
	"errors"
	"net"
)

// Elsewhere idle connections are not released (setupRelease).
const canPeek = false

func waitReadable(*net.TCPConn) (bool, error) {
	return false, errors.New("mux: idle release needs a unix socket")
}
