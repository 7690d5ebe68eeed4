package socks5

// PendingPlaces reports the per-client places held by sessions without a
// stream yet, over all clients and balancers (v2 LOCAL sessions).
func (s *Server) PendingPlaces() int { return s.pending.by.Total() + s.pending.balancers.Total() }
