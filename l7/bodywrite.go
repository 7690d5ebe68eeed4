package l7

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// Request bodies (blob pushes) reach Nexus through the upstream
// connection's ReadFrom: http.Transport hands the body to io.Copy with the
// connection as destination. Read from the client's TLS stream, a body
// comes one 16 KiB record (or, chunked, one chunk piece) per Read, and
// io.Copy would write each on its own: 65,536 write(2) calls per GiB, each
// pushing a TCP segment train and waking Nexus's reader. On loopback,
// moving 1 GiB in 16 KiB writes costs both sides about twice the CPU of
// 128 KiB writes (docs/bench). So the body is gathered into a pooled
// buffer and written when it is full, at the end of the body, or when a
// read returns and the oldest gathered byte has waited bodyBatchDelay.
//
// Bytes therefore never wait for more than one read beyond that delay. A
// client that pauses mid-body delays the few bytes it sent just before the
// pause until it resumes; that changes nothing Nexus can see: its idle
// timer runs from its last received byte either way, and it acts on an
// upload only when the whole body is in.
const (
	bodyBatchSize  = 128 << 10
	bodyBatchDelay = time.Millisecond
)

var bodyBatchPool = sync.Pool{New: func() any { return new([bodyBatchSize]byte) }}

// upstreamConn is a connection to a Nexus node.
type upstreamConn struct {
	net.Conn
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// dialUpstream wraps dial's connections so the Transport's body copies go
// through upstreamConn.ReadFrom.
func dialUpstream(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &upstreamConn{Conn: c}, nil
	}
}

// ReadFrom copies r to the connection in batches (see bodyBatchSize). It
// returns the number of bytes written; io.EOF from r is not an error.
func (c *upstreamConn) ReadFrom(r io.Reader) (int64, error) {
	bp := bodyBatchPool.Get().(*[bodyBatchSize]byte)
	defer bodyBatchPool.Put(bp)
	buf := bp[:]
	var (
		written int64
		filled  int
		since   time.Time // when the oldest gathered byte was read
	)
	for {
		n, rerr := r.Read(buf[filled:])
		if n > 0 {
			if filled == 0 {
				since = time.Now()
			}
			filled += n
		}
		if filled > 0 && (rerr != nil || filled == len(buf) || time.Since(since) >= bodyBatchDelay) {
			w, werr := c.Conn.Write(buf[:filled])
			written += int64(w)
			if werr != nil {
				return written, werr
			}
			filled = 0
		}
		if rerr != nil {
			if rerr == io.EOF { // io.Copy's contract: EOF itself, never wrapped
				return written, nil
			}
			return written, rerr
		}
	}
}
