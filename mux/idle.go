package mux

import (
	"net"
	"time"
)

// DefaultPassthroughIdleTimeout closes a passthrough stream that carried no
// byte either way for this long (a backend that never answers, a client
// that went silent), or whose side has left bytes sent to it
// unacknowledged for this long: long next to any TLS keep-alive a registry
// client or git holds, short next to forever.
const DefaultPassthroughIdleTimeout = 5 * time.Minute

// clientSocket is a socket whose peer is not the client but passes what it
// reads on to it: a SOCKS5 stream's socket pair, which has no TCP
// counters. ClientSocket is the client's own TCP socket, which the watch
// reads in its place.
type clientSocket interface {
	ClientSocket() net.Conn
}

// sockCounters is what the watch reads of a TCP socket's kernel counters.
type sockCounters struct {
	// acked: bytes the peer acknowledged; received: bytes received from
	// it (zero while acksOnly reports true).
	acked, received uint64
	// queued: bytes wait for the peer, unsent or unacknowledged.
	queued bool
}

// watchIdle closes the stream once it is idle or stalled. Idle: the
// backend socket up has carried no byte either way for idle (idleEnd).
// Stalled: the client socket c or up has had bytes queued towards its peer
// and none of them acknowledged for idle (stallEnd, with the side): a peer
// that never reads but sends a byte now and then keeps the stream from
// being idle, and would hold it and its buffers for good. Everything is
// read from the sockets' kernel counters, so the copy keeps splicing:
// nothing in Go sees the bytes. While acksOnly reports true (the bytes up
// receives are read only to be dropped), only what up's peer acknowledges
// counts as traffic. For a SOCKS5 stream's socket pair the SOCKS client's
// socket is watched (clientSocket); another socket that is no TCP is not.
// stop ends the watch.
func watchIdle(c, up net.Conn, idle time.Duration, acksOnly func() bool, idleEnd func(), stallEnd func(side string)) (stop func()) {
	readUp, upOK := countersOf(up, acksOnly)
	readC, cOK := countersOf(c, func() bool { return true })
	if !upOK || idle <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(max(idle/8, 5*time.Millisecond))
		defer tick.Stop()
		start := time.Now()
		u := readUp()
		last, since := u.acked+u.received, start
		upSend := sendProgress{acked: u.acked, since: start}
		var cSend sendProgress
		if cOK {
			cSend = sendProgress{acked: readC().acked, since: start}
		}
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				u := readUp()
				if n := u.acked + u.received; n != last {
					last, since = n, now
				} else if now.Sub(since) >= idle {
					idleEnd()
					return
				}
				if cOK && cSend.stalled(readC(), now, idle) {
					stallEnd("client")
					return
				}
				if upSend.stalled(u, now, idle) {
					stallEnd("backend")
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// sendProgress is the watch's record of one socket's sending: what its
// peer had acknowledged when last seen, and since when.
type sendProgress struct {
	acked uint64
	since time.Time
}

// stalled reports whether s shows bytes queued towards the peer with no
// acknowledgement since idle ago. A peer that reads, however slowly,
// acknowledges, and one that has taken everything has nothing queued.
func (p *sendProgress) stalled(s sockCounters, now time.Time, idle time.Duration) bool {
	if !s.queued || s.acked != p.acked {
		p.acked, p.since = s.acked, now
		return false
	}
	return now.Sub(p.since) >= idle
}
