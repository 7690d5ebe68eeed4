package mux

import "testing"

// OpenCounts reports what the connection limits hold: places taken against
// --max-conns, and --max-conns-per-client slots over all clients and
// balancers (LOCAL connections).
func (s *Server) OpenCounts() (active int64, clientSlots int) {
	return s.active.Load(), s.clients.Total() + s.balancers.Total()
}

// IdleCounts reports how many HTTP/1 connections are parked (idle release)
// and how many routed connections http.Server or a park goroutine serves.
func (s *Server) IdleCounts() (parked, live int) {
	parked, _ = s.Released()
	s.live.mu.Lock()
	live = len(s.live.http)
	s.live.mu.Unlock()
	return parked, live
}

// SetRefusedSlot runs f between a client's slot refused at its limit and
// the reclaim after it, until t ends.
func SetRefusedSlot(t testing.TB, f func()) {
	refusedSlot.Store(&f)
	t.Cleanup(func() { refusedSlot.Store(nil) })
}

// RefusingConns reports the refused connections reading on before their
// close that hold a --max-conns-per-client slot, over all clients.
func (s *Server) RefusingConns() int {
	s.refusing.mu.Lock()
	defer s.refusing.mu.Unlock()
	n := 0
	for _, m := range s.refusing.conns {
		n += len(m)
	}
	return n
}

// AlertLingerTime is how long a refused connection reads on at most.
const AlertLingerTime = alertLingerTime
