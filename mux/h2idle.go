package mux

import (
	"net/http"
	"time"
)

// An HTTP/2 connection's --idle-timeout counts from its last answer, as an
// HTTP/1 connection's does. net/http restarts its own idle timer each time
// the connection's last stream ends, answered or not, so a client that
// opens a stream and resets it every few seconds held its connection for
// good. Here an answer restarts the clock: a stream whose handler returned
// before the client reset it; and so does the end of a busy spell (net/http's
// StateActive to StateIdle) that answered one, when net/http restarts its
// own. A stream in flight is never cut: once the clock has run out the
// connection is closed when net/http has no stream, and a stream begun
// meanwhile is served with a GOAWAY, so streams that overlap end too.

// h2IdleGrace lets net/http's own idle timer go first on a connection whose
// last stream was answered: its GOAWAY tells the client, and it closes the
// connection a second later.
const h2IdleGrace = time.Second

// h2ConnKey is the context key of an HTTP/2 request's *liveConn
// (connContext).
type h2ConnKey struct{}

// serveH2 runs the HTTP stage for r, a request on lc, and records whether
// it was answered (its client did not reset the stream, nor the connection
// end, first).
func (lc *liveConn) serveH2(h http.Handler, w http.ResponseWriter, r *http.Request) {
	lc.goAwayIfIdleOver(w)
	h.ServeHTTP(w, r)
	if r.Context().Err() == nil {
		lc.answers.Add(1)
		lc.lastAnswer.Store(time.Now().UnixNano())
	} else {
		// Nothing written yet (a 1xx cleared the header, or none came):
		// net/http writes HEADERS once the handler returns.
		lc.goAwayIfIdleOver(w)
	}
}

// goAwayIfIdleOver has the answer end lc once its idle clock ran out:
// net/http sends GOAWAY with the answer's HEADERS.
func (lc *liveConn) goAwayIfIdleOver(w http.ResponseWriter) {
	if lc.idleOver.Load() && lc.h2IdleLeft() <= 0 {
		w.Header().Set("Connection", "close")
	}
}

// startH2Idle starts lc's idle clock, at the connection's hand-over.
func (s *Server) startH2Idle(lc *liveConn) {
	lc.idleSpan = s.opts.IdleTimeout + h2IdleGrace
	now := time.Now().UnixNano()
	lc.lastAnswer.Store(now)
	lc.idleFrom.Store(now)
	s.live.mu.Lock()
	lc.idleTimer = time.AfterFunc(lc.idleSpan, func() { s.h2IdleCheck(lc) })
	s.live.mu.Unlock()
}

// h2IdleLeft is how long lc may stay idle from now.
func (lc *liveConn) h2IdleLeft() time.Duration {
	return time.Until(time.Unix(0, lc.lastAnswer.Load()).Add(lc.idleSpan))
}

// h2IdleCheck runs when lc's idle clock may have run out: it closes lc,
// waits for the end of its streams in flight (h2Spell), or sets the clock
// again for the time left.
func (s *Server) h2IdleCheck(lc *liveConn) {
	if left := lc.h2IdleLeft(); left > 0 {
		s.rearmH2Idle(lc, left)
		return
	}
	lc.idleOver.Store(true)
	if lc.idle.Load() {
		lc.close()
	}
}

func (s *Server) rearmH2Idle(lc *liveConn, d time.Duration) {
	s.live.mu.Lock()
	if !lc.closed {
		lc.idleTimer.Reset(d)
	}
	s.live.mu.Unlock()
}

// h2Spell follows lc's busy spells: one that answered a stream restarts
// the idle clock at its end, when net/http restarts its own; at the end of
// any, a clock that ran out meanwhile closes the connection.
func (s *Server) h2Spell(lc *liveConn, state http.ConnState) {
	switch state {
	case http.StateActive:
		lc.answersFrom.Store(lc.answers.Load())
	case http.StateIdle:
		if lc.answers.Load() != lc.answersFrom.Load() {
			lc.lastAnswer.Store(lc.idleFrom.Load()) // connState's now
		}
		if !lc.idleOver.Load() {
			return
		}
		if left := lc.h2IdleLeft(); left > 0 {
			lc.idleOver.Store(false)
			s.rearmH2Idle(lc, left)
			return
		}
		lc.close()
	}
}
