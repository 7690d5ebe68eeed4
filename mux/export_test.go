package mux

// OpenCounts reports what the connection limits hold: places taken against
// --max-conns, and --max-conns-per-client slots over all clients.
func (s *Server) OpenCounts() (active int64, clientSlots int) {
	s.clients.mu.Lock()
	defer s.clients.mu.Unlock()
	for _, n := range s.clients.n {
		clientSlots += n
	}
	return s.active.Load(), clientSlots
}
