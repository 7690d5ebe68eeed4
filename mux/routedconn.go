package mux

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexmux/nexmux/l7"
)

// routedConn carries the routing decision to the HTTP stage and to the TLS
// certificate choice. Below TLS it is also the l7.WriteBatcher that turns
// the TLS records of one large response write into few socket writes.
type routedConn struct {
	net.Conn
	info  *l7.ConnInfo
	state *State

	wmu   sync.Mutex // crypto/tls writes under its own lock; Close may not
	batch *batchBuf  // non-nil between BeginBatch and EndBatch
	wn    int

	// The send deadline (senddeadline.go). dmu orders the deadline's
	// setters with a write's checks, which run under wmu.
	dmu       sync.Mutex
	sendSpan  time.Duration // > 0: the write deadline is a send deadline
	sendEnd   time.Time     // when it expires unless sendQuantum moves first
	sendMoved int           // bytes taken toward the next sendQuantum
	sendLeft  time.Duration // sendEnd - now when the last write ended
	sendIdle  bool          // no write since the last ended: sendEnd is stale
	sendCheck time.Time     // the socket's write deadline, set as a check
	sending   atomic.Bool   // sendSpan > 0, read by writes without dmu
	absolute  bool          // a non-zero absolute write deadline is in force
	sockClear bool          // the socket holds no write deadline (false: may)
	writing   atomic.Int32  // socket writes under way
	try       tryWriter     // under wmu

	// Read-ahead (l7.ReadAheader). crypto/tls reads under its own lock,
	// so Reads never overlap; rmu orders them with Begin/EndReadAhead,
	// which run on the goroutine copying the body (or closing it).
	rmu     sync.Mutex
	ahead   bool          // between BeginReadAhead and EndReadAhead
	pooled  *readAheadBuf // held while ahead, or a read fills it
	rb      []byte        // bytes read ahead: rb[rr:rw] not yet handed out
	rr, rw  int
	reading bool  // a Read is filling pooled
	rerr    error // from a read whose bytes are still in rb

	// lingerer, for an HTTP/2 connection, closes it lingering (linger.go)
	// unless a write failed: a client that stopped reading is cut.
	lingerer    *Server
	writeFailed atomic.Bool
	// h2: an HTTP/2 connection's entry, whose requests' answers restart
	// its idle clock (h2idle.go).
	h2 *liveConn
	// hurried: closing without waiting on the client (hurry.go).
	hurried atomic.Bool
	// closing: closed from another goroutine (closeH2): the write
	// deadline only ever comes closer from the first one set since,
	// closeBy (under dmu; see SetWriteDeadline).
	closing atomic.Bool
	closeBy time.Time
	// stopRead: an idle HTTP/2 connection being closed (closeH2) reads no
	// more, so net/http's server takes no stream its client sends now.
	stopRead atomic.Bool

	// watch, during the TLS handshake, sees every byte crypto/tls reads
	// (handshakealert.go); only the handshake's goroutine reads then.
	watch *alertWatch
}

// Close closes the connection, lingering when it is HTTP/2.
func (c *routedConn) Close() error {
	if c.lingerer != nil {
		return c.lingerer.lingerClose(c)
	}
	return c.Conn.Close()
}

var (
	_ l7.WriteBatcher = (*routedConn)(nil)
	_ l7.ReadAheader  = (*routedConn)(nil)
)

// readAheadSize bounds one read(2) while an upload is read ahead.
const readAheadSize = 512 << 10

type readAheadBuf [readAheadSize]byte

var readAheadBufs = sync.Pool{New: func() any { return new(readAheadBuf) }}

func (c *routedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.stopRead.Load() {
		return 0, io.EOF
	}
	c.rmu.Lock()
	if c.rr < c.rw {
		n := copy(p, c.rb[c.rr:c.rw])
		c.rr += n
		c.releaseLocked()
		c.rmu.Unlock()
		if c.watch != nil {
			c.watch.feed(p[:n])
		}
		return n, nil
	}
	if err := c.rerr; err != nil {
		c.rerr = nil
		c.rmu.Unlock()
		return 0, err
	}
	if !c.ahead {
		c.rmu.Unlock()
		n, err := c.Conn.Read(p)
		if c.watch != nil {
			c.watch.feed(p[:n])
		}
		return n, err
	}
	if c.pooled == nil {
		c.pooled = readAheadBufs.Get().(*readAheadBuf)
	}
	buf := c.pooled[:]
	c.reading = true
	c.rmu.Unlock()

	n, err := c.Conn.Read(buf)

	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.reading = false
	m := copy(p, buf[:n])
	c.rb, c.rr, c.rw = buf, m, n
	if m < n {
		c.rerr, err = err, nil // hand out the bytes first
	}
	c.releaseLocked()
	return m, err
}

// releaseLocked gives the pooled buffer back once no upload is reading
// ahead: unread bytes, if any, move to a buffer of their size.
func (c *routedConn) releaseLocked() {
	if c.pooled == nil {
		if c.rr == c.rw {
			c.rb, c.rr, c.rw = nil, 0, 0
		}
		return
	}
	if c.ahead || c.reading {
		return
	}
	if c.rr < c.rw {
		c.rb = append([]byte(nil), c.rb[c.rr:c.rw]...)
		c.rr, c.rw = 0, len(c.rb)
	} else {
		c.rb, c.rr, c.rw = nil, 0, 0
	}
	readAheadBufs.Put(c.pooled)
	c.pooled = nil
}

// BeginReadAhead implements l7.ReadAheader.
func (c *routedConn) BeginReadAhead() {
	c.rmu.Lock()
	c.ahead = true
	c.rmu.Unlock()
}

// EndReadAhead implements l7.ReadAheader; it may be called more than once.
func (c *routedConn) EndReadAhead() {
	c.rmu.Lock()
	c.ahead = false
	c.releaseLocked()
	c.rmu.Unlock()
}

// batchSize is how much a batch gathers before one write(2): sixteen full
// TLS records (16 KiB of plaintext, at most 256 bytes of expansion, a
// 5-byte header each), so one 512 KiB read from Nexus (l7 copyBufferSize)
// leaves in two writes: fewer syscalls and client wake-ups per GiB pulled.
const batchSize = 16 * (16<<10 + 256 + 5)

type batchBuf [batchSize]byte

// batchBufs are held only while a large write is in progress: an idle
// connection keeps none.
var batchBufs = sync.Pool{New: func() any { return new(batchBuf) }}

func (c *routedConn) Write(p []byte) (int, error) {
	n, err := c.write(p)
	if err != nil {
		c.writeFailed.Store(true)
	}
	return n, err
}

func (c *routedConn) write(p []byte) (int, error) {
	if c.hurried.Load() {
		return c.writeHurried(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.batch == nil {
		return c.writeSocket(p)
	}
	if c.wn+len(p) > batchSize {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > batchSize {
			return c.writeSocket(p)
		}
	}
	c.wn += copy(c.batch[c.wn:], p)
	return len(p), nil
}

func (c *routedConn) flushLocked() error {
	if c.wn == 0 {
		return nil
	}
	n, err := c.writeSocket(c.batch[:c.wn])
	if err == nil && n < c.wn {
		err = io.ErrShortWrite
	}
	c.wn = 0
	return err
}

// BeginBatch implements l7.WriteBatcher.
func (c *routedConn) BeginBatch() {
	c.wmu.Lock()
	if c.batch == nil {
		c.batch = batchBufs.Get().(*batchBuf)
		c.wn = 0
	}
	c.wmu.Unlock()
}

// EndBatch implements l7.WriteBatcher: it writes what the batch holds.
func (c *routedConn) EndBatch() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.batch == nil {
		return nil
	}
	err := c.flushLocked()
	if err != nil {
		c.writeFailed.Store(true)
	}
	batchBufs.Put(c.batch)
	c.batch = nil
	return err
}
