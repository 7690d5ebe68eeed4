package mux

import (
	"errors"
	"os"
	"time"

	"github.com/nexmux/nexmux/l7"
)

// Send deadlines (l7.SendDeadliner). --send-timeout, like nginx's
// send_timeout, bounds how long a response waits without the client taking
// a byte, not how long a write takes: a remote site on a thin link pulling
// a layer reads slowly but never stops. net/http only has absolute write
// deadlines, and crypto/tls fails the connection for good once a write of
// its times out, so the HTTP stage's deadline is kept here, below TLS: a
// socket write goes on while the client takes each sendQuantum of it
// within the deadline's span, and fails once it does not. A client on a
// thin link is slow, not stalled; one that reads a byte now and then is
// stalled, as --body-timeout's 64 KiB rule has it for uploads. The
// response's writes share the span (set again, it is kept): a client must
// not earn a fresh one per 32 KiB copy or small Nexus chunk. Time between
// writes is Nexus's and does not count.
//
// Every other deadline reaches the socket through SetWriteDeadline or
// SetDeadline (net/http's clearing after a response, crypto/tls's 5 s
// close_notify and its abort after it, HTTP/2's WriteByteTimeout, the
// handshake's, a hijack's) and stays absolute: it ends the send deadline,
// and its expiry, or a deadline in the past, fails the write at once. A
// send deadline set while a non-zero one is in force is dropped.

// sendDeadline is a routedConn seen as an l7.SendDeadliner: a conversion,
// not an allocation, per connection.
type sendDeadline routedConn

var _ l7.SendDeadliner = (*sendDeadline)(nil)

// SetWriteDeadline sets a send deadline whose span is t - now, unless one
// is in force: net/http sets an absolute deadline after each response, so
// that one is this response's. A zero t, or one not in the future, is an
// absolute deadline. A non-zero absolute deadline (crypto/tls's for its
// close_notify, sent by a Close from another goroutine) is kept: only
// net/http clears it, between responses.
func (s *sendDeadline) SetWriteDeadline(t time.Time) error {
	c := (*routedConn)(s)
	if t.IsZero() {
		return c.SetWriteDeadline(t)
	}
	span := time.Until(t)
	if span <= 0 {
		return c.SetWriteDeadline(t)
	}
	return s.SetSendSpan(span)
}

// SetSendSpan sets a send deadline of span d (SetWriteDeadline of now+d,
// without reading the clock). The socket's write deadline is left alone
// until a write has to wait (writeSocket): most responses fit in the
// socket's buffer and never need its timer.
func (s *sendDeadline) SetSendSpan(d time.Duration) error {
	c := (*routedConn)(s)
	if d <= 0 {
		// A deadline already passed, as SetWriteDeadline has it: a span
		// of its own would leave the socket with none (sendSpan <= 0).
		return c.SetWriteDeadline(time.Now().Add(d))
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.sendSpan > 0 || c.absolute {
		return nil
	}
	c.sendSpan, c.sendMoved = d, 0
	c.sendLeft, c.sendIdle = d, true
	c.sendCheck = time.Time{} // the next waiting write sets one
	c.sending.Store(true)
	if c.writing.Load() > 0 {
		// A write is under way (one begun under no deadline may wait
		// for good): it gets the deadline now, its span from now.
		now := time.Now()
		c.sendEnd = now.Add(d)
		return c.setCheck(now)
	}
	return nil
}

// setCheck sets the socket's write deadline to the next check (c.dmu
// held).
func (c *routedConn) setCheck(now time.Time) error {
	c.sendCheck = c.nextCheck(now)
	c.sockClear = false
	return c.Conn.SetWriteDeadline(c.sendCheck)
}

// sendQuantum is what a client must take within a send deadline's span to
// earn the next span: the least rate is sendQuantum per --send-timeout.
const sendQuantum = 64 << 10

// sendChecks is how many times per span a blocked write under a send
// deadline wakes to see whether it moved bytes: a client that stops is cut
// at most span/sendChecks late, at the cost of a wake-up and a write(2)
// that often, only while a write waits on the client.
const sendChecks = 8

// nextCheck is the socket deadline under a send deadline (c.dmu held).
func (c *routedConn) nextCheck(now time.Time) time.Time {
	if at := now.Add(c.sendSpan / sendChecks); at.Before(c.sendEnd) {
		return at
	}
	return c.sendEnd
}

// SetWriteDeadline sets an absolute write deadline.
func (c *routedConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.closing.Load() {
		// Another goroutine's Close writes close_notify under crypto/tls's
		// deadline, the first one set since: net/http's HTTP/2 writer sets
		// its own (--send-timeout) around each write, then clears it,
		// which would leave that write waiting on the client. Only an
		// earlier one is taken.
		if t.IsZero() || !c.closeBy.IsZero() && t.After(c.closeBy) {
			return nil
		}
		c.closeBy = t
	}
	c.sendSpan, c.absolute = 0, !t.IsZero()
	c.sending.Store(false)
	if t.IsZero() && c.sockClear {
		return nil // net/http clears it after every response
	}
	c.sockClear = t.IsZero()
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets absolute read and write deadlines.
func (c *routedConn) SetDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.sendSpan, c.absolute = 0, !t.IsZero()
	c.sending.Store(false)
	c.sockClear = t.IsZero()
	return c.Conn.SetDeadline(t)
}

// writeSocket writes p to the socket; under a send deadline a write that
// times out goes on while the client takes bytes (c.wmu held). What the
// socket takes at once is written without its deadline: only a write that
// waits needs the timer.
func (c *routedConn) writeSocket(p []byte) (int, error) {
	c.writing.Add(1) // before sending is read: see SetSendSpan
	defer c.writing.Add(-1)
	send := c.sending.Load()
	n := 0
	if send {
		if n = c.try.writeNow(c.Conn, p); n > 0 {
			c.sendTaken(n)
			if n == len(p) {
				return n, nil
			}
		}
		c.sendResume()
	}
	moved, err := c.Conn.Write(p[n:])
	n += moved
	for err != nil && n < len(p) && errors.Is(err, os.ErrDeadlineExceeded) && c.sendGoesOn(moved) {
		moved, err = c.Conn.Write(p[n:])
		n += moved
	}
	if send && err == nil {
		c.sendPause(moved)
	}
	return n, err
}

// sendTaken counts n bytes the socket took without waiting: no time
// passed, so the budget left stands, and a sendQuantum earns a whole span.
func (c *routedConn) sendTaken(n int) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	switch {
	case c.sendSpan <= 0:
	case !c.sendIdle:
		c.sendCount(n, time.Now())
	default:
		if c.sendMoved += n; c.sendMoved >= sendQuantum {
			c.sendMoved = 0
			c.sendLeft = c.sendSpan
		}
	}
}

// sendResume starts a write under a send deadline: the time since the
// last write ended was Nexus's, so the budget left then is given again.
// A check still ahead is kept (moving the socket's timer costs more than a
// small response's write): it is at most a check's interval away, so it
// comes no later than that after the new end.
func (c *routedConn) sendResume() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.sendSpan > 0 && c.sendIdle {
		now := time.Now()
		c.sendEnd, c.sendIdle = now.Add(c.sendLeft), false
		if !c.sendCheck.After(now) {
			_ = c.setCheck(now)
		}
	}
}

// sendPause ends a write under a send deadline: the bytes it moved since
// its last check count, and the budget left waits for the next write.
func (c *routedConn) sendPause(moved int) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.sendSpan > 0 {
		now := time.Now()
		c.sendCount(moved, now)
		c.sendLeft, c.sendIdle = c.sendEnd.Sub(now), true
	}
}

// sendCount counts moved toward sendQuantum; a quantum earns a span from
// now (c.dmu held).
func (c *routedConn) sendCount(moved int, now time.Time) {
	if c.sendMoved += moved; c.sendMoved >= sendQuantum {
		c.sendMoved = 0
		if end := now.Add(c.sendSpan); end.After(c.sendEnd) {
			c.sendEnd = end
		}
	}
}

// sendGoesOn is called when a socket write timed out: it reports whether
// a send deadline gives it more time, and sets the socket's next deadline.
// moved is what the client took since the last check; a sendQuantum of
// it counts as taken now, which errs toward the client by at most a check.
func (c *routedConn) sendGoesOn(moved int) bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.sendSpan <= 0 {
		return false // an absolute deadline: its expiry stands
	}
	now := time.Now()
	c.sendCount(moved, now)
	if !now.Before(c.sendEnd) {
		return false
	}
	return c.setCheck(now) == nil
}
