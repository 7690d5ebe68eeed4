package mux

import "unsafe"

// net/http's read ahead. Once a request's body is read, net/http reads one
// byte ahead on a goroutine of its own until the response is done
// (connReader.backgroundRead), to notice a client that goes away. That
// goroutine starts on a small stack, and a read through crypto/tls and
// nexmux's wrappers to a socket with nothing to read is deeper than it:
// the runtime would copy the stack to a larger one for almost every
// request. So h1Conn first waits for the socket to become readable on a
// shallow path (the same wait as a parked connection's) and reads through
// crypto/tls only once a byte or the client's FIN is there. net/http ends
// the read ahead with a read deadline in the past, which ends the wait
// the same way; bytes crypto/tls or routedConn already hold are not seen
// until the response is done, which is when net/http reads them anyway.

// This holds as long as only net/http reads an h1Conn: a handler that
// hijacked the connection and read one byte into an array of its own would
// wait on the socket for bytes crypto/tls may hold. nexmux never hijacks
// (l7 refuses upgrades).

// bgRead tells net/http's read ahead from its other reads. The read ahead
// is into a one-byte array of net/http's own; a read into its request
// buffer can be one byte long too (a fill with one byte of room, the
// header limit), and must never wait on the socket: the bytes it asks for
// may already be in crypto/tls. So the request buffer is learned from the
// first read on the connection, which is net/http's first fill of all of
// it, and a one-byte read into it is never taken for the read ahead.
type bgRead struct {
	seen bool    // the first read happened
	lo   uintptr // address of net/http's request buffer; 0: not learned
}

func (b *bgRead) learn(p []byte) {
	b.seen = true
	if len(p) == netHTTPReadBuf {
		b.lo = uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	}
}

// isReadAhead reports whether p is net/http's read ahead.
func (b *bgRead) isReadAhead(p []byte) bool {
	if len(p) != 1 || cap(p) != 1 || b.lo == 0 {
		return false
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return a < b.lo || a >= b.lo+netHTTPReadBuf
}

// reset forgets the request buffer: a resumed connection is a new one to
// net/http, with a buffer from its pool.
func (b *bgRead) reset() { *b = bgRead{} }
