package socks5

// PendingPlaces reports the per-client places held by sessions without a
// stream yet, over all clients.
func (s *Server) PendingPlaces() int { return s.pending.by.Total() }
