package mux_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/mux"
)

// sessionCache is a crypto/tls client session cache that answers for a
// server name another name's session when told to (alias): a client whose
// cache is not keyed by server name (by address, say) offers the ticket
// it got for one name when it connects for another. Removals are ignored,
// so the aliased session stays on offer.
type sessionCache struct {
	mu      sync.Mutex
	m       map[string]*tls.ClientSessionState
	alias   map[string]string
	offered map[string]int // sessions handed out, by the key asked for
}

func newSessionCache() *sessionCache {
	return &sessionCache{m: map[string]*tls.ClientSessionState{}, alias: map[string]string{}, offered: map[string]int{}}
}

func (c *sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := key
	if a, ok := c.alias[key]; ok {
		k = a
	}
	s, ok := c.m[k]
	if ok {
		c.offered[key]++
	}
	return s, ok
}

func (c *sessionCache) Put(key string, s *tls.ClientSessionState) {
	if s == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = s
}

func (c *sessionCache) offers(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offered[key]
}

// resumeDial is one connection naming sni with the shared cache: a
// request over it (so a TLS 1.3 ticket, sent after the handshake, is
// read), then whether it resumed, the route that served it and the
// certificate serial the client holds for it.
type resumed struct {
	did    bool
	route  string
	serial string
	names  []string
}

func resumeDial(t *testing.T, addr string, cfg *tls.Config) resumed {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("%s: %v", cfg.ServerName, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+cfg.ServerName+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var r resumed
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: reading the response: %v", cfg.ServerName, err)
		}
		if v, ok := strings.CutPrefix(line, "X-Route: "); ok {
			r.route = strings.TrimSpace(v)
		}
		if line == "\r\n" {
			break
		}
	}
	st := c.ConnectionState()
	r.did = st.DidResume
	r.serial = st.PeerCertificates[0].SerialNumber.String()
	r.names = st.PeerCertificates[0].DNSNames
	return r
}

var tlsVersions = []struct {
	name string
	v    uint16
}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}}

// A session ticket issued for one server name does not resume a
// connection for another (another route, possibly another certificate the
// client then never sees): that connection gets a full handshake, and the
// first name's session still resumes. crypto/tls resumes any ticket its
// keys open.
func TestSessionTicketResumesOnlyItsServerName(t *testing.T) {
	ca, err := certs.NewCA("ticket test CA")
	if err != nil {
		t.Fatal(err)
	}
	pairA, err := ca.IssueTLS("team-a.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	pairB, err := ca.IssueTLS("team-b.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	wild, err := ca.IssueTLS("*.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	const a, b = "team-a.nexmux.test", "team-b.nexmux.test"
	for _, pairs := range []struct {
		name  string
		certs []tls.Certificate
		// verify: a client checking the certificate (crypto/tls's offers
		// a cached session only where its certificate names the host:
		// here the wildcard does); else one that does not.
		verify bool
	}{
		{"a certificate each", []tls.Certificate{pairA, pairB}, false},
		{"one wildcard certificate", []tls.Certificate{wild}, true},
	} {
		for _, ver := range tlsVersions {
			t.Run(pairs.name+"/"+ver.name, func(t *testing.T) {
				m := startMuxWith(t, muxConfig{certs: pairs.certs, routes: []string{b + "=team-b"}})
				cache := newSessionCache()
				cfg := func(name string) *tls.Config {
					return &tls.Config{ServerName: name, RootCAs: ca.Pool(), InsecureSkipVerify: !pairs.verify,
						ClientSessionCache: cache, MinVersion: ver.v, MaxVersion: ver.v, NextProtos: []string{"http/1.1"}}
				}
				if r := resumeDial(t, m.addr, cfg(a)); r.did || r.route != a {
					t.Fatalf("first connection for %s: resumed %v, route %s", a, r.did, r.route)
				}
				if r := resumeDial(t, m.addr, cfg(a)); !r.did {
					t.Fatalf("second connection for %s did not resume: resumption is broken for its own name", a)
				}
				cache.alias[b] = a
				before := cache.offers(b)
				r := resumeDial(t, m.addr, cfg(b))
				if cache.offers(b) == before {
					t.Fatalf("the client offered no session for %s: the test proves nothing", b)
				}
				if r.did {
					t.Errorf("a connection for %s resumed %s's session (route %s, certificate for %v)", b, a, r.route, r.names)
				} else if want := pairs.certs[len(pairs.certs)-1].Leaf.DNSNames[0]; r.route != b || r.names[0] != want {
					t.Errorf("connection for %s: route %s, certificate for %v; want %s's", b, r.route, r.names, want)
				}
				delete(cache.alias, b)
				if r := resumeDial(t, m.addr, cfg(a)); !r.did {
					t.Errorf("connection for %s after one for %s did not resume", a, b)
				}
				if r := resumeDial(t, m.addr, cfg(b)); !r.did || r.route != b {
					t.Errorf("connection for %s with its own session: resumed %v, route %s", b, r.did, r.route)
				}
			})
		}
	}
}

// A reload keeps the ticket keys: a session resumes across a reload that
// leaves its name's certificate alone (same files read again), but not
// across one that replaces it (renewed, or replaced after a compromise):
// the client does one full handshake and gets the new certificate, which
// it would otherwise not see until the session's lifetime (up to 7 days)
// ran out.
func TestSessionResumptionAcrossReload(t *testing.T) {
	ca, err := certs.NewCA("ticket reload test CA")
	if err != nil {
		t.Fatal(err)
	}
	const a = "team-a.nexmux.test"
	issue := func(host string) tls.Certificate {
		p, err := ca.IssueTLS(host)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldA, other := issue(a), issue("other.nexmux.test")
	for _, ver := range tlsVersions {
		t.Run(ver.name, func(t *testing.T) {
			m := startMuxWith(t, muxConfig{certs: []tls.Certificate{oldA, other}})
			cache := newSessionCache()
			cfg := &tls.Config{ServerName: a, RootCAs: ca.Pool(), ClientSessionCache: cache,
				MinVersion: ver.v, MaxVersion: ver.v, NextProtos: []string{"http/1.1"}}
			first := resumeDial(t, m.addr, cfg)
			if r := resumeDial(t, m.addr, cfg); !r.did {
				t.Fatal("no resumption before any reload")
			}
			reload := func(pairs ...tls.Certificate) {
				cs, err := mux.NewCerts(pairs)
				if err != nil {
					t.Fatal(err)
				}
				st := *m.srv.State()
				st.Certs = cs
				m.srv.Update(&st)
			}
			// The same pairs, parsed again, as a reload reads the files.
			reload(reparse(t, oldA), reparse(t, other))
			if r := resumeDial(t, m.addr, cfg); !r.did || r.serial != first.serial {
				t.Errorf("after a reload with the same certificates: resumed %v, serial %s (was %s)", r.did, r.serial, first.serial)
			}
			// Another name's certificate replaced: a's sessions stand.
			reload(reparse(t, oldA), issue("other.nexmux.test"))
			if r := resumeDial(t, m.addr, cfg); !r.did {
				t.Errorf("after a reload replacing another name's certificate: did not resume")
			}
			newA := issue(a)
			reload(newA, other)
			r := resumeDial(t, m.addr, cfg)
			if r.did || r.serial == first.serial {
				t.Errorf("after a reload replacing %s's certificate: resumed %v with serial %s (old %s); want a full handshake with the new one", a, r.did, r.serial, first.serial)
			}
			if r := resumeDial(t, m.addr, cfg); !r.did {
				t.Errorf("no resumption under the new certificate")
			}
		})
	}
}

// reparse is p as a reload reads it: a new tls.Certificate from the
// same bytes, with its own parsed leaf.
func reparse(t *testing.T, p tls.Certificate) tls.Certificate {
	t.Helper()
	q := tls.Certificate{Certificate: p.Certificate, PrivateKey: p.PrivateKey}
	return q
}

// TestSessionResumptionAcrossReloadOfTheOtherPair: a name served by an
// ECDSA and an RSA pair (each client gets the one it can use) resumes no
// session after a reload that replaced either: the session's ticket does
// not say which one its client got, and a key replaced after a compromise
// must stand behind no old session.
func TestSessionResumptionAcrossReloadOfTheOtherPair(t *testing.T) {
	ca, err := certs.NewCA("ticket pair reload test CA")
	if err != nil {
		t.Fatal(err)
	}
	const a = "team-a.nexmux.test"
	ecdsaPair, err := ca.IssueTLS(a)
	if err != nil {
		t.Fatal(err)
	}
	rsaPair := rsaCertificate(t, a)
	m := startMuxWith(t, muxConfig{certs: []tls.Certificate{ecdsaPair, rsaPair}})
	cache := newSessionCache()
	// A TLS 1.2 client with only RSA suites gets the RSA pair.
	cfg := &tls.Config{ServerName: a, InsecureSkipVerify: true, ClientSessionCache: cache,
		MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		NextProtos: []string{"http/1.1"}}
	resumeDial(t, m.addr, cfg)
	if r := resumeDial(t, m.addr, cfg); !r.did {
		t.Fatal("no resumption before any reload")
	}
	cs, err := mux.NewCerts([]tls.Certificate{reparse(t, ecdsaPair), rsaCertificate(t, a)})
	if err != nil {
		t.Fatal(err)
	}
	st := *m.srv.State()
	st.Certs = cs
	m.srv.Update(&st)
	if r := resumeDial(t, m.addr, cfg); r.did {
		t.Errorf("after a reload replacing the RSA pair the client was served: resumed its session under the replaced key; want a full handshake")
	}
}
