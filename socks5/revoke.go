package socks5

// login is who a SOCKS client logged in as, with the password then valid.
type login struct{ user, password string }

// noteLogin remembers the user ss logged in as, for Revoke; false when a
// reload revoked that user (or changed its password) since the login,
// before ss made its CONNECT: Revoke could not see ss then. A reload
// changes the users before it calls Revoke, so under s.mu either this
// sees the new users or Revoke sees ss.
func (s *Server) noteLogin(ss *session) bool {
	if s.opts.Users == nil || ss.user == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if pw, ok := s.opts.Users()[ss.user.user]; !ok || pw != ss.user.password {
		return false
	}
	if !s.track.HasConn(ss.client) {
		return true // already gone: untrackConn deletes logins after this lock
	}
	if s.logins == nil {
		s.logins = map[*idleConn]login{}
	}
	s.logins[ss.client] = *ss.user
	return true
}

// Revoke closes the SOCKS clients, and so their tunnels, whose user is not
// in users any more or has another password now.
func (s *Server) Revoke(users map[string]string) {
	var end []*idleConn
	s.mu.Lock()
	for c, l := range s.logins {
		if pw, ok := users[l.user]; !ok || pw != l.password {
			end = append(end, c)
		}
	}
	s.mu.Unlock()
	for _, c := range end {
		s.log.Info("socks5: tunnel closed: its user was revoked by reload", "client", c.RemoteAddr().String())
		c.end()
	}
}
