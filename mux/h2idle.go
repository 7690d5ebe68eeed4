package mux

import (
	"net/http"
	"time"
)

// An HTTP/2 connection's --idle-timeout counts from its last answer, as an
// HTTP/1 connection's does. net/http restarts its own idle timer each time
// the connection's last stream ends, answered or not, so a client that
// opens a stream and resets it every few seconds held its connection for
// good. Here a busy spell (net/http's StateActive to StateIdle) restarts
// the clock only if a stream in it was answered: its handler returned
// before the client reset the stream. A stream in flight is never cut: the
// close waits until net/http has none.

// h2IdleGrace lets net/http's own idle timer go first on a connection whose
// last stream was answered: its GOAWAY tells the client, and it closes the
// connection a second later.
const h2IdleGrace = time.Second

// h2ConnKey is the context key of an HTTP/2 request's *liveConn
// (connContext).
type h2ConnKey struct{}

// answered records, from the handler's goroutine, that r got its answer
// unless its client reset the stream (or the connection ended) first.
func (lc *liveConn) answered(r *http.Request) {
	if r.Context().Err() == nil {
		lc.answers.Add(1)
	}
}

// startH2Idle starts lc's idle clock, at the connection's hand-over.
func (s *Server) startH2Idle(lc *liveConn) {
	lc.lastAnswer.Store(time.Now().UnixNano())
	s.live.mu.Lock()
	lc.idleTimer = time.AfterFunc(s.opts.IdleTimeout+h2IdleGrace, func() { s.h2IdleCheck(lc) })
	s.live.mu.Unlock()
}

// h2IdleLeft is how long lc may stay idle from now.
func (s *Server) h2IdleLeft(lc *liveConn) time.Duration {
	return time.Until(time.Unix(0, lc.lastAnswer.Load()).Add(s.opts.IdleTimeout + h2IdleGrace))
}

// h2IdleCheck runs when lc's idle clock may have run out: it closes lc,
// waits for the end of its streams in flight (h2Spell), or sets the clock
// again for the time left.
func (s *Server) h2IdleCheck(lc *liveConn) {
	if left := s.h2IdleLeft(lc); left > 0 {
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
			lc.lastAnswer.Store(time.Now().UnixNano())
		}
		if !lc.idleOver.Load() {
			return
		}
		if left := s.h2IdleLeft(lc); left > 0 {
			lc.idleOver.Store(false)
			s.rearmH2Idle(lc, left)
			return
		}
		lc.close()
	}
}
