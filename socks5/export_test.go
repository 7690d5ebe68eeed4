package socks5

import (
	"net"
	"testing"
)

// PendingPlaces reports the per-client places held by sessions without a
// stream yet, over all clients and balancers (v2 LOCAL sessions).
func (s *Server) PendingPlaces() int { return s.pending.by.Total() + s.pending.balancers.Total() }

// ThrottleEntries is the most failed-login entries the throttle keeps.
const ThrottleEntries = throttleEntries

// ThrottleTable reports the entries the login throttle holds now.
func (s *Server) ThrottleTable() int {
	s.throttle.mu.Lock()
	defer s.throttle.mu.Unlock()
	return len(s.throttle.m)
}

// SetRefusedTake runs f in the accept loop between a client's take refused
// at a limit and the reclaim after it, until t ends.
func SetRefusedTake(t testing.TB, f func()) {
	refusedTake.Store(&f)
	t.Cleanup(func() { refusedTake.Store(nil) })
}

// SetRefusalWritten runs f on each session that ended without a stream
// (its refusal written) before it lingers, until t ends.
func SetRefusalWritten(t testing.TB, f func()) {
	refusalWritten.Store(&f)
	t.Cleanup(func() { refusalWritten.Store(nil) })
}

// LingeringSessions reports the refused sessions reading on before their
// close, over all clients.
func (s *Server) LingeringSessions() int {
	s.pending.lmu.Lock()
	defer s.pending.lmu.Unlock()
	n := 0
	for _, m := range s.pending.lingering {
		n += len(m)
	}
	return n
}

// SetDialed tells f of each dial a session asks for (the client, the
// address go-socks5 dials, the decision's port and whether the rule set
// gave one), until t ends.
func SetDialed(t testing.TB, f func(client net.Addr, addr string, port int, decided bool)) {
	dialed.Store(&f)
	t.Cleanup(func() { dialed.Store(nil) })
}

// Sessions reports the clients s tracks now.
func (s *Server) Sessions() int {
	n := 0
	s.track.EachConn(func(net.Conn) { n++ })
	return n
}
