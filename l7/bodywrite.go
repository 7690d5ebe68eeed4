package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Request bodies (blob pushes) are read from the client's TLS stream one
// 16 KiB record (or, chunked, one chunk piece) per Read, and http.Transport
// would write each on its own, waking Nexus's reader every time; large
// writes cost both sides far less CPU (numbers: docs/bench/notes.md). So
// bodies are gathered into a pooled buffer and written when it is full, at
// the end of the body, or when a read returns and the oldest gathered byte
// has waited bodyBatchDelay. The Transport sends a body one of two ways,
// and both are covered:
//
//   - with a Content-Length, through io.Copy into the connection: the
//     connection is an upstreamConn, whose ReadFrom gathers;
//   - chunked (how the docker CLI sends a layer's PATCH), through io.Copy
//     into a chunk writer that flushes every chunk: the body is a
//     batchedBody (set in rewriteRequest), whose WriteTo gathers, so each
//     chunk is a batch (sent in three writes: what fills the Transport's
//     32 KiB buffer, the rest, and the chunk's closing CRLF; a write per
//     record without it).
//
// Over an https:// upstream the Transport writes into crypto/tls, which
// makes one record per write: bodies go unbatched there (nexmux beside
// Nexus speaks plain HTTP to it).
//
// Bytes never wait for more than one read beyond bodyBatchDelay. A client
// that pauses mid-body delays what it sent in the millisecond before the
// pause until it resumes (up to a batch); that changes nothing Nexus can
// see: its idle timer runs from its last received byte either way, and it
// acts on an upload only when the whole body is in.
const (
	bodyBatchSize  = 512 << 10
	bodyBatchDelay = time.Millisecond
)

var bodyBatchPool = sync.Pool{New: func() any { return new([bodyBatchSize]byte) }}

// upstreamConn is a connection to a Nexus node.
type upstreamConn struct {
	net.Conn
	// deadline is the write deadline its user set (unix ns, 0: none),
	// which Write keeps when sooner than its own: crypto/tls bounds its
	// close_notify by 5 s, then by a deadline in the past.
	deadline atomic.Int64
	// armed is the socket's write deadline (unix ns, 0: none).
	armed atomic.Int64
	// readDeadline and readArmed are the same for reads; wrote is when the
	// last write returned (unix ns).
	readDeadline atomic.Int64
	readArmed    atomic.Int64
	wrote        atomic.Int64
	// reads counts the reads that brought bytes (freshness).
	reads atomic.Uint64
	conns *upstreamConns // tracking it (nil: none)
}

func (c *upstreamConn) SetWriteDeadline(t time.Time) error {
	keep(t, &c.deadline, &c.armed)
	return c.Conn.SetWriteDeadline(t)
}

func (c *upstreamConn) SetReadDeadline(t time.Time) error {
	keep(t, &c.readDeadline, &c.readArmed)
	return c.Conn.SetReadDeadline(t)
}

func (c *upstreamConn) SetDeadline(t time.Time) error {
	keep(t, &c.deadline, &c.armed)
	keep(t, &c.readDeadline, &c.readArmed)
	return c.Conn.SetDeadline(t)
}

// keep records a deadline the connection's user set, and that the socket
// has it.
func keep(t time.Time, own, armed *atomic.Int64) {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	own.Store(ns)
	armed.Store(ns)
}

// rearm moves the socket's deadline (set) to due when it is past, later
// than due, or more than a sixteenth of timeout early: moving its timer
// costs more than a small request's read or write, so it moves about once
// per timeout/16 on a busy connection; one that comes early is moved then.
func rearm(armed *atomic.Int64, set func(time.Time) error, now, due, timeout int64) {
	if a := armed.Load(); a <= now || a > due || due-a > timeout/16 {
		armed.Store(due)
		_ = set(time.Unix(0, due))
	}
}

// sooner is due, or the user's own deadline when that is set and sooner.
func sooner(due int64, own *atomic.Int64) int64 {
	if o := own.Load(); o != 0 && o < due {
		return o
	}
	return due
}

// Read must bring something within upstreamReadStallTimeout of when it
// began or of the last write to the connection, whichever is later
// (nginx's proxy_read_timeout, between two reads): a node that stops
// sending an answer mid-body fails its read, which ends the request and
// its connection, instead of holding the client and a Jetty thread for
// good. A blob's body has its own, shorter, timer, which resumes the
// download elsewhere (resumeBody). The wait for an answer's headers is
// the Transport's (upstreamResponseHeaderTimeout, shorter too): its
// timeout is final, where a failed read on a reused connection would have
// the Transport send the request again. The Transport's read of the next
// answer begins as soon as the last one ends, before the request is sent:
// the last write is what an upload's wait counts from.
func (c *upstreamConn) Read(b []byte) (int, error) {
	timeout := upstreamReadStallTimeout.Load()
	began := time.Now().UnixNano()
	now := began
	for {
		due := max(began, c.wrote.Load()) + timeout
		if now >= due {
			return 0, errReadStalled
		}
		rearm(&c.readArmed, c.Conn.SetReadDeadline, now, sooner(due, &c.readDeadline), timeout)
		n, err := c.Conn.Read(b)
		if n > 0 {
			c.reads.Add(1)
		}
		if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		now = time.Now().UnixNano()
		if own := c.readDeadline.Load(); own != 0 && own <= now {
			return n, err // the user's own deadline
		}
	}
}

// errReadStalled fails a read from Nexus that brought nothing within
// upstreamReadStallTimeout.
var errReadStalled = fmt.Errorf("Nexus sent nothing within the read timeout: %w", os.ErrDeadlineExceeded)

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
// returns the number of bytes written, which is what the Transport counts
// it as; io.EOF from r is not an error.
func (c *upstreamConn) ReadFrom(r io.Reader) (int64, error) {
	return copyBatched(c, r) // through Write, for its deadline
}

// Write must make progress within upstreamSendTimeout: only a node that
// takes no byte for that long fails it, never a long or slow upload.
// Progress is looked for every eighth of the timeout (sendSteps), and the
// clock runs from the last step that saw some, so a write fails within an
// eighth or two of the timeout past the node's last byte. A whole timeout
// per look let the bytes a blocked write took at its start count as
// progress at its end: the kernel takes a write's first bytes into room
// below the level at which it wakes a blocked writer, so against a frozen
// Nexus each such write had a timeout of its own, and a push failed after
// three timeouts (360 s), not within the two the README promised.
// The socket's deadline is moved lazily (rearm); one that comes early is
// moved then, so none fails a write early. When it returns is when a read's
// wait for the answer counts from (Read).
func (c *upstreamConn) Write(b []byte) (int, error) {
	timeout := upstreamSendTimeout.Load()
	step := timeout / sendSteps
	written := 0
	var last int64 // when progress was last seen: the first try's start
	defer func() { c.wrote.Store(time.Now().UnixNano()) }()
	for {
		now := time.Now().UnixNano()
		if last == 0 {
			last = now
		}
		due := sooner(min(now+step, last+timeout), &c.deadline)
		rearm(&c.armed, c.Conn.SetWriteDeadline, now, due, step)
		n, err := c.Conn.Write(b[written:])
		written += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return written, err
		}
		now = time.Now().UnixNano()
		if own := c.deadline.Load(); own != 0 && own <= now {
			return written, err // the user's own deadline
		}
		if n > 0 {
			last = now // some time within this step: counted at its end
		} else if now >= last+timeout {
			return written, err
		}
	}
}

// sendSteps is how many times per upstreamSendTimeout a blocked write to
// Nexus is looked at for progress.
const sendSteps = 8

// batchedBody is an outgoing request body whose WriteTo gathers reads
// into batches. With ahead set (an HTTP/1.x request on a connection nexmux
// terminated TLS for), the client's connection is read ahead while the
// body is read (ConnInfo.Reads): from the first Read or WriteTo until the
// body ends, fails or is closed.
//
// net/http starts the server's background read of the connection inside
// the body Read that reaches EOF, before that Read returns; if it runs
// before the EndReadAhead that follows, it holds the read-ahead buffer
// until the handler finishes (net/http then interrupts it). The window is
// the few instructions between the two.
type batchedBody struct {
	io.ReadCloser
	ahead ReadAheader

	mu     sync.Mutex
	closed bool
}

func (b *batchedBody) Read(p []byte) (int, error) {
	if b.ahead == nil {
		return b.ReadCloser.Read(p)
	}
	// Begin on every Read (idempotent), but never after Close: the
	// Transport may still read a body ReverseProxy has closed, and a
	// read-ahead begun then would have no end.
	b.mu.Lock()
	if !b.closed {
		b.ahead.BeginReadAhead()
	}
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.ahead.EndReadAhead()
	}
	return n, err
}

// WriteTo copies the body to w in batches (see bodyBatchSize).
func (b *batchedBody) WriteTo(w io.Writer) (int64, error) {
	if b.ahead == nil {
		return copyBatched(w, b.ReadCloser)
	}
	// Read (not the inner body) so the read-ahead ends as soon as the body
	// does, before the last batch goes out to Nexus.
	return copyBatched(w, readOnly{b})
}

// readOnly hides WriteTo.
type readOnly struct{ io.Reader }

// Close ends the read-ahead: the Transport closes a body when it is done
// with it, also when the body was abandoned (Nexus answered early, the
// request failed).
func (b *batchedBody) Close() error {
	if b.ahead != nil {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		b.ahead.EndReadAhead()
	}
	return b.ReadCloser.Close()
}

// copyBatched copies r to w, one w.Write per batch.
func copyBatched(w io.Writer, r io.Reader) (int64, error) {
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
			m, werr := w.Write(buf[:filled])
			written += int64(m)
			if werr == nil && m < filled {
				werr = io.ErrShortWrite
			}
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
