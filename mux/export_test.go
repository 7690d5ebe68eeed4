package mux

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
