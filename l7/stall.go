package l7

import (
	"net/http"
	"time"
)

// Stalled clients. net/http's ReadTimeout and WriteTimeout would cut a
// large push or pull at exactly that many seconds, so nexmux has neither;
// instead each body read from the client and each write to it must finish
// within its own timeout, like nginx's client_body_timeout and
// send_timeout. Over HTTP/1 behind mux a write only needs to move 64 KiB
// within it (ConnInfo.Sends): net/http's deadlines are absolute. Without
// them a client that stops reading a blob, or stops sending an upload,
// holds a Nexus connection (a Jetty thread) for as long as it likes.
const (
	// DefaultBodyTimeout is the default --body-timeout.
	DefaultBodyTimeout = 60 * time.Second
	// DefaultSendTimeout is the default --send-timeout.
	DefaultSendTimeout = 60 * time.Second
)

type readDeadliner interface{ SetReadDeadline(time.Time) error }

type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

// deadliners finds net/http's per-request deadlines below w's wrappers
// (what http.ResponseController does, without allocating one).
func deadliners(w http.ResponseWriter) (readDeadliner, writeDeadliner) {
	for {
		r, rok := w.(readDeadliner)
		wd, wok := w.(writeDeadliner)
		if rok || wok {
			return r, wd
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil, nil
		}
		w = u.Unwrap()
	}
}

// stallTimeout is a configured timeout's effect: 0 is the default,
// negative never (0 in the result).
func stallTimeout(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}
