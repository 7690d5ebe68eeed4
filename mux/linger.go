package mux

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// lingerMaxBytes bounds what a lingering connection reads and throws away:
// a client that keeps sending after the close is cut.
const lingerMaxBytes = 4 << 20

// An HTTP/2 client may still be reading the last response when net/http
// closes the connection (a second after GOAWAY and the last stream: a
// drain, --max-conn-age, a revoked route, the idle timeout). As it reads
// it sends WINDOW_UPDATEs; a socket closed under them answers with a reset
// that makes the client's kernel drop what it had not yet read, and the
// response loses its tail. So routedConn.Close of an HTTP/2 connection
// that served a request sends a FIN after close_notify and reads until the
// client closes its side, at most --send-timeout without a byte and
// --idle-timeout in all, before the socket is closed: a lingering close.
// HTTP/1 clients send nothing while they read, and need none of this.
type lingering struct {
	mu    sync.Mutex
	conns map[*routedConn]*lingerMoves
	hard  bool // Shutdown gave up waiting: close at once
}

// lingerMoves is when a lingering connection last moved a byte: one its
// client sent, or one it acknowledged. A drain waits only for connections
// that move (drainStall).
type lingerMoves struct {
	at    atomic.Int64 // UnixNano
	blind atomic.Bool  // acknowledgements not seen (not Linux)
}

func (m *lingerMoves) moved() { m.at.Store(time.Now().UnixNano()) }

// drainStall: a drain stops waiting for a lingering connection that moved
// no byte either way for this long. Its client is gone without a word (a
// CI runner's VM deleted, a laptop shut) or stopped; either way it takes
// nothing more, and waiting would hold the drain until --drain-timeout.
// Outside a drain --send-timeout still bounds it.
const drainStall = 5 * time.Second

// halfCloser is the socket under a routed connection that a lingering
// close half-closes and reads: the client's TCP socket, or the router's
// end of a SOCKS5 stream's socket pair, whose half-close the SOCKS session
// passes on to its client (and the client's close back).
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// clientAcks is a socket whose peer is not the client but passes what it
// reads on to it: a SOCKS5 stream's socket pair. UnackedByClient returns a
// reader of the bytes written to it that the client has not acknowledged
// yet, its end of stream included (as unackedOf's), or nil when it cannot
// tell.
type clientAcks interface {
	UnackedByClient() func() (int, bool)
}

// lingerClose closes rc's socket after the client has read what was
// written to it, or at once when nothing is gained by waiting.
func (s *Server) lingerClose(rc *routedConn) error {
	sock, ok := underlying[halfCloser](rc.Conn)
	if !ok || rc.writeFailed.Load() || !rc.info.Requested() {
		// A client that stopped reading, or never asked for anything,
		// has nothing to lose.
		return rc.Conn.Close()
	}
	l := &s.lingering
	l.mu.Lock()
	if l.hard {
		l.mu.Unlock()
		return rc.Conn.Close()
	}
	if l.conns == nil {
		l.conns = map[*routedConn]*lingerMoves{}
	}
	m := &lingerMoves{}
	m.moved()
	l.conns[rc] = m
	l.mu.Unlock()
	if err := sock.CloseWrite(); err != nil {
		s.endLinger(rc)
		return rc.Conn.Close()
	}
	go s.linger(rc, sock, m)
	return nil
}

// lingerQuiet: a client whose kernel has acknowledged everything written
// to it, close_notify and FIN included, and that sent nothing for this
// long is let go: it holds the whole response (a reset does not take back
// what its kernel received), and it may never close its side (an idle
// connection its library reads only to reuse it, a stopped process), so
// a drain would wait for it until --drain-timeout and its places stay
// taken until --send-timeout.
const lingerQuiet = time.Second

// lingerPoll is how often a quiet lingering connection asks what its
// client has not acknowledged, at first and once something moved; while
// nothing does (a client whose window is shut, or whose host is gone) the
// interval doubles up to lingerPollMax, so thousands of stalled lingers
// cost next to no CPU until --send-timeout. lingerPollMax stays well
// under drainStall: a drain still tells one that moves.
const (
	lingerPoll    = lingerQuiet / 4
	lingerPollMax = 2 * time.Second
)

// linger reads sock until the client closes, or has everything and falls
// quiet, then closes rc's chain, which gives its places back. net/http's
// own reader may still be reading the socket (a connection closed under a
// live serve loop: closeH2): then it takes the client's bytes, and
// --send-timeout (or lingerQuiet) ends the wait.
func (s *Server) linger(rc *routedConn, sock halfCloser, m *lingerMoves) {
	defer s.endLinger(rc)
	defer rc.Conn.Close()
	// A socket pair's (SOCKS5) peer is the SOCKS session, not the client:
	// the session says what the client has (clientAcks), as a TCP socket
	// does.
	unacked := unackedOf(sock)
	m.blind.Store(unacked == nil)
	prevQ := -1
	poll := lingerPoll
	last := time.Now() // the last byte from the client
	end := last.Add(s.opts.IdleTimeout)
	var buf [2048]byte
	for read := 0; read < lingerMaxBytes; {
		now := time.Now()
		dl := end
		if t := s.opts.SendTimeout; t > 0 && last.Add(t).Before(dl) {
			dl = last.Add(t)
		}
		if !now.Before(dl) {
			return
		}
		if unacked != nil {
			wake := last.Add(lingerQuiet)
			if !wake.After(now) {
				wake = now.Add(poll)
			}
			if wake.Before(dl) {
				dl = wake
			}
		}
		_ = sock.SetReadDeadline(dl)
		n, err := sock.Read(buf[:])
		read += n
		if n > 0 {
			last = time.Now()
			m.moved()
			poll = lingerPoll
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if unacked == nil {
			continue
		}
		q, ok := unacked()
		if !ok {
			continue
		}
		if q < prevQ {
			m.moved() // the client acknowledged some
			poll = lingerPoll
		} else if poll < lingerPollMax {
			poll = min(2*poll, lingerPollMax)
		}
		prevQ = q
		if q == 0 && time.Since(last) >= lingerQuiet {
			return
		}
	}
}

func (s *Server) endLinger(rc *routedConn) {
	l := &s.lingering
	l.mu.Lock()
	delete(l.conns, rc)
	l.mu.Unlock()
}

// lingeringMoving reports whether a lingering connection moved a byte
// within drainStall, or cannot tell.
func (s *Server) lingeringMoving() bool {
	since := time.Now().Add(-drainStall).UnixNano()
	s.lingering.mu.Lock()
	defer s.lingering.mu.Unlock()
	for _, m := range s.lingering.conns {
		if m.blind.Load() || m.at.Load() > since {
			return true
		}
	}
	return false
}

// lingeringConns is how many connections linger now.
func (s *Server) lingeringConns() int {
	s.lingering.mu.Lock()
	defer s.lingering.mu.Unlock()
	return len(s.lingering.conns)
}

// stopLingering closes the lingering connections, and those closed from
// now on, at once. It returns how many it closed.
func (s *Server) stopLingering() int {
	l := &s.lingering
	l.mu.Lock()
	l.hard = true
	conns := make([]*routedConn, 0, len(l.conns))
	for rc := range l.conns {
		conns = append(conns, rc)
	}
	l.mu.Unlock()
	for _, rc := range conns {
		_ = rc.Conn.Close()
	}
	return len(conns)
}
