package mux

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"slices"
)

// Session tickets carry the server name they were issued for and the
// certificate that name had then, and resume nothing else. crypto/tls
// resumes any ticket its keys open, whatever name the client sends now:
// a client whose cache is not keyed by name would reach another route
// holding a certificate it never saw for it. And the ticket keys outlive
// reloads, so a name's replaced certificate (renewed, or compromised)
// would still stand behind sessions for up to crypto/tls's 7 days.

// ticketTag marks nexmux's entry in SessionState.Extra (crypto/tls asks
// for a prefix there). The entry is the tag, the certificate's id, then
// the server name as crypto/tls gave it.
const ticketTag = "nexmux.sni\x00"

// certID identifies a certificate's leaf across reloads (the same file
// read again has the same id): a SHA-256 prefix, taken once per pair.
type certID [16]byte

func leafID(leaf *x509.Certificate) (id certID) {
	sum := sha256.Sum256(leaf.Raw)
	copy(id[:], sum[:])
	return id
}

// certIDFor identifies every pair that may be served for a server name as
// crypto/tls gives it (zero when there is none): Get's choice and those
// For may pick instead for a client that cannot use it (an RSA pair beside
// ECDSA). A ticket does not say which pair its client got, so replacing
// any of them ends the name's sessions.
func (c *Certs) certIDFor(serverName string) certID {
	cert, alts, wildAlts := c.choices(certName(serverName))
	if cert == nil {
		return certID{}
	}
	// A pair may name the host both exactly and by wildcard: each counts
	// once, or the two would cancel out.
	pairs := make([]*tls.Certificate, 1, 4)
	pairs[0] = cert
	for _, list := range [][]*tls.Certificate{alts, wildAlts} {
		for _, alt := range list {
			if !slices.Contains(pairs, alt) {
				pairs = append(pairs, alt)
			}
		}
	}
	var id certID
	for _, p := range pairs {
		x := c.ids[p]
		for k := range id {
			id[k] ^= x[k]
		}
	}
	return id
}

// wrapSession is tls.Config.WrapSession: crypto/tls's own ticket, bound
// to the connection's server name and its certificate. The state is the
// current one; a reload during the handshake binds the ticket to the
// certificate the reload gave the name, which it then resumes under.
func (s *Server) wrapSession(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	id := s.state.Load().Certs.certIDFor(cs.ServerName)
	e := make([]byte, 0, len(ticketTag)+len(id)+len(cs.ServerName))
	e = append(append(append(e, ticketTag...), id[:]...), cs.ServerName...)
	ss.Extra = append(ss.Extra, e)
	return s.tlsConfig.EncryptTicket(cs, ss)
}

// unwrapSession is tls.Config.UnwrapSession: (nil, nil), a full
// handshake, for a ticket issued for another server name (case aside),
// or under a certificate the name no longer has.
func (s *Server) unwrapSession(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	ss, err := s.tlsConfig.DecryptTicket(identity, cs)
	if ss == nil || err != nil {
		return nil, err
	}
	for _, e := range ss.Extra {
		rest, ok := bytes.CutPrefix(e, []byte(ticketTag))
		if !ok || len(rest) < len(certID{}) {
			continue
		}
		id, name := rest[:len(certID{})], rest[len(certID{}):]
		if !equalFoldASCII(name, cs.ServerName) {
			return nil, nil
		}
		want := s.state.Load().Certs.certIDFor(cs.ServerName)
		if !bytes.Equal(id, want[:]) {
			return nil, nil
		}
		return ss, nil
	}
	// Every ticket nexmux issues is bound: this one is not its own.
	return nil, nil
}

// equalFoldASCII reports whether b and s are equal but for the case of
// ASCII letters (strings.EqualFold folds Unicode too: 'K', the Kelvin
// sign, would equal 'k').
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
