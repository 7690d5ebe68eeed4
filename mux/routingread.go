package mux

import "net"

// routingReadSize is the first read of a connection: a whole ClientHello
// in the common case (~0.5 KiB; ~1.9 KiB with a post-quantum key share).
const routingReadSize = 2 << 10

// routingReader serves the routing phase (the first byte, then the
// ClientHello) from reads as large as the client's first flight, so a
// typical hello costs one read(2) where reading exactly what the parser
// asks for costs three (one byte, the record header, the record). Every
// byte it read from the connection stays in buf, in order, and buf goes in
// front of the connection afterwards: nothing is lost or reordered.
type routingReader struct {
	c   net.Conn
	buf []byte // every byte read from c
	off int    // bytes handed out by Read
	err error  // from a read that also returned bytes; reported next
}

func newRoutingReader(c net.Conn) *routingReader {
	return &routingReader{c: c, buf: make([]byte, 0, routingReadSize)}
}

// rewind makes the next Read start again at the first byte read.
func (r *routingReader) rewind() { r.off = 0 }

func (r *routingReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.off == len(r.buf) {
		if r.err != nil {
			return 0, r.err
		}
		if len(r.buf) == cap(r.buf) {
			// A hello spread over several records: grow. The parser
			// stops at sni.MaxHelloBytes, which bounds this.
			grown := make([]byte, len(r.buf), 2*cap(r.buf))
			copy(grown, r.buf)
			r.buf = grown
		}
		n, err := r.c.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		if n == 0 {
			return 0, err
		}
		r.err = err
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// fill reads on while more(buf) holds and reads succeed; a failed read
// ends it, and the caller judges what was read.
func (r *routingReader) fill(more func([]byte) bool) {
	var scratch [64]byte
	for more(r.buf) {
		r.off = len(r.buf)
		if _, err := r.Read(scratch[:]); err != nil {
			return
		}
	}
}
