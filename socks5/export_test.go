package socks5

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
