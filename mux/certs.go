package mux

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/nexmux/nexmux/internal/errlist"
)

// Certs picks a certificate by server name among the certificates' SANs.
// Lookups are two map probes: routing 10,000 names must cost what one does.
type Certs struct {
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate // "*.example.com" keyed "example.com"
	def   *tls.Certificate            // the first pair: for clients with no or unknown SNI
	names []string
}

// LoadCerts loads certificate/key pairs paired by position. Every problem is
// returned, one error each.
func LoadCerts(certFiles, keyFiles []string) (*Certs, error) {
	var errs []error
	if len(certFiles) != len(keyFiles) {
		errs = append(errs, fmt.Errorf("cert/key: %d --cert but %d --key; they are paired by position", len(certFiles), len(keyFiles)))
	}
	var pairs []tls.Certificate
	for i := 0; i < len(certFiles) && i < len(keyFiles); i++ {
		c, err := tls.LoadX509KeyPair(certFiles[i], keyFiles[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("cert %q / key %q: %v", certFiles[i], keyFiles[i], err))
			continue
		}
		pairs = append(pairs, c)
	}
	if len(errs) > 0 {
		return nil, errlist.Join(errs...)
	}
	return NewCerts(pairs)
}

// NewCerts indexes certificates by their DNS SANs.
func NewCerts(pairs []tls.Certificate) (*Certs, error) {
	c := &Certs{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for i := range pairs {
		cert := &pairs[i]
		leaf := cert.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certificate %d: %v", i+1, err)
			}
			cert.Leaf = leaf
		}
		if c.def == nil {
			c.def = cert
		}
		for _, n := range leaf.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			c.names = append(c.names, n)
			if suffix, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := c.wild[suffix]; !dup {
					c.wild[suffix] = cert
				}
			} else if _, dup := c.exact[n]; !dup {
				c.exact[n] = cert
			}
		}
	}
	return c, nil
}

// Len is the number of certificate pairs' names indexed.
func (c *Certs) Len() int {
	if c == nil {
		return 0
	}
	return len(c.names)
}

// Names lists every DNS SAN indexed.
func (c *Certs) Names() []string {
	if c == nil {
		return nil
	}
	return append([]string(nil), c.names...)
}

// Covers reports whether a certificate names host (not the fallback).
func (c *Certs) Covers(host string) bool {
	if c == nil {
		return false
	}
	_, ok := c.lookup(host)
	return ok
}

func (c *Certs) lookup(name string) (*tls.Certificate, bool) {
	if cert := c.exact[name]; cert != nil {
		return cert, true
	}
	// A wildcard covers exactly one label (RFC 6125 6.4.3).
	if i := strings.IndexByte(name, '.'); i > 0 {
		if cert := c.wild[name[i+1:]]; cert != nil {
			return cert, true
		}
	}
	return nil, false
}

// Get returns the certificate for a (canonical) server name, falling back to
// the first pair for clients without SNI and legacy-port clients that name
// Nexus's old host.
func (c *Certs) Get(name string) *tls.Certificate {
	if c == nil {
		return nil
	}
	if cert, ok := c.lookup(name); ok {
		return cert
	}
	return c.def
}
