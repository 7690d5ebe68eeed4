//go:build !unix

package mux

import (
	"errors"
	"syscall"
)

// Elsewhere idle connections are not released (setupRelease).
const canPeek = false

func waitReadable(syscall.RawConn) (bool, error) {
	return false, errors.New("mux: idle release needs a unix socket")
}
