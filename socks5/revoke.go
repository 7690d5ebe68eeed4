package socks5

import (
	gosocks5 "github.com/armon/go-socks5"
)

// login is who a SOCKS client logged in as, with the password then valid.
type login struct{ user, password string }

// noteLogin remembers the user of a client that passed authentication.
func (s *Server) noteLogin(c *idleConn, ac *gosocks5.AuthContext) {
	if ac == nil || ac.Method != gosocks5.UserPassAuth || s.opts.Users == nil {
		return
	}
	user := ac.Payload["Username"]
	pw := s.opts.Users()[user]
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.track.HasConn(c) {
		return // already gone: untrackConn deletes logins after this lock
	}
	if s.logins == nil {
		s.logins = map[*idleConn]login{}
	}
	s.logins[c] = login{user, pw}
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
