package mux_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
)

// notHostNames are server names no host can have (RFC 1035, RFC 5890: an
// IDN travels as its A-label; RFC 6066: host_name is ASCII), each of which
// a wildcard (*.nexmux.test) or, once a port is cut off, an exact route
// would match. crypto/tls's client sends every one as given.
var notHostNames = map[string]string{
	"longer than 253 bytes":        strings.Repeat("a.", 125) + "nexmux.test",
	"label of 64 bytes":            strings.Repeat("a", 64) + ".nexmux.test",
	"raw UTF-8":                    "bücher.nexmux.test",
	"byte that is not UTF-8":       "\xff.nexmux.test",
	"space":                        "a b.nexmux.test",
	"star":                         "a*b.nexmux.test",
	"slash":                        "a/b.nexmux.test",
	"percent":                      "%41.nexmux.test",
	"control byte":                 "a\x01b.nexmux.test",
	"port on a wildcard name":      "x.nexmux.test:443",
	"port on an exact route":       "team-a.nexmux.test:443",
	"brackets":                     "[x].nexmux.test",
	"empty label":                  "a..nexmux.test",
	"leading dot":                  ".nexmux.test",
	"label starting with a hyphen": "-a.nexmux.test",
	"label ending with a hyphen":   "a-.nexmux.test",
}

// handshakeOutcome is what a crypto/tls client naming sni saw.
type handshakeOutcome struct {
	client string // its local address, as logged
	err    error
	route  string   // X-Route of a request, when served
	leaf   []string // the served certificate's DNS SANs
}

func handshakeTo(t *testing.T, addr, sni string) handshakeOutcome {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	o := handshakeOutcome{client: c.LocalAddr().String()}
	tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if o.err = tc.Handshake(); o.err != nil {
		return o
	}
	o.leaf = tc.ConnectionState().PeerCertificates[0].DNSNames
	if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The head is read as text: the test handler echoes the server name
	// in a header, control bytes and all.
	br := bufio.NewReader(tc)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		if v, ok := strings.CutPrefix(line, "X-Route: "); ok {
			o.route = strings.TrimSpace(v)
		}
		if line == "\r\n" {
			break
		}
	}
	return o
}

// A server name that is no host name is one no route has: on the fan-in
// listener it gets what an unknown name gets (an unrecognized_name alert,
// refused as unknown_sni), never a wildcard route's certificate and
// backend.
func TestNoHostNameIsAnUnknownServerName(t *testing.T) {
	m := startMuxWith(t, muxConfig{routes: []string{"*.nexmux.test=team-w"}})
	unknown := handshakeTo(t, m.addr, "nosuch.example.org")
	if unknown.err == nil {
		t.Fatalf("an unknown name was served by %s", unknown.route)
	}
	m.waitRefusal(t, unknown.client, mux.ReasonUnknownSNI)
	for what, name := range notHostNames {
		t.Run(what, func(t *testing.T) {
			// Counted before the alert is sent; log lines are rate-limited.
			before := m.refused.get(mux.ReasonUnknownSNI)
			got := handshakeTo(t, m.addr, name)
			if got.err == nil {
				t.Fatalf("%q was served by route %s with the certificate for %v; want what an unknown name gets: %v", name, got.route, got.leaf, unknown.err)
			}
			if got.err.Error() != unknown.err.Error() {
				t.Fatalf("%q: %v; want what an unknown name gets: %v", name, got.err, unknown.err)
			}
			if n := m.refused.get(mux.ReasonUnknownSNI) - before; n != 1 {
				t.Fatalf("%q: %d unknown_sni refusals counted, want 1", name, n)
			}
		})
	}
}

// On a port route, where the port names the route and an unknown name
// gets the fallback (first) certificate, a name that is no host name gets
// the fallback too, not the wildcard pair it would otherwise match.
func TestNoHostNameOnAPortRouteGetsTheFallbackCertificate(t *testing.T) {
	ca, err := certs.NewCA("server name test CA")
	if err != nil {
		t.Fatal(err)
	}
	fallback, err := ca.IssueTLS("nexus.corp.test")
	if err != nil {
		t.Fatal(err)
	}
	wild, err := ca.IssueTLS("*.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	m := startMuxWith(t, muxConfig{certs: []tls.Certificate{fallback, wild}, ports: []string{"8082=team-p"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(ln, 8082) })
	port := ln.Addr().String()
	unknown := handshakeTo(t, port, "nosuch.example.org")
	if unknown.err != nil || unknown.route != ":8082" || len(unknown.leaf) != 1 || unknown.leaf[0] != "nexus.corp.test" {
		t.Fatalf("unknown name on the port route: %+v; want served by :8082 with nexus.corp.test's pair", unknown)
	}
	if h := handshakeTo(t, port, "x.nexmux.test"); h.err != nil || h.leaf[0] != "*.nexmux.test" {
		t.Fatalf("x.nexmux.test on the port route: %+v; want the wildcard pair", h)
	}
	for what, name := range notHostNames {
		t.Run(what, func(t *testing.T) {
			got := handshakeTo(t, port, name)
			if got.err != nil || got.route != unknown.route || strings.Join(got.leaf, ",") != strings.Join(unknown.leaf, ",") {
				t.Fatalf("%q on the port route: route %q, certificate %v, err %v; want what an unknown name gets: route %q, certificate %v",
					name, got.route, got.leaf, got.err, unknown.route, unknown.leaf)
			}
		})
	}
}

// Host names in every form a client may send them still route: any case
// (DNS is case-blind), an A-label, '_' (route patterns accept it, and
// crypto/x509 matches it), the longest name and label there may be.
func TestHostNamesRoute(t *testing.T) {
	m := startMuxWith(t, muxConfig{routes: []string{"*.nexmux.test=team-w"}})
	label63 := strings.Repeat("b", 63)
	longest := strings.Repeat(label63+".", 3) + strings.Repeat("c", 253-3*64-len(".nexmux.test")) + ".nexmux.test"
	if len(longest) != 253 {
		t.Fatalf("longest name has %d bytes", len(longest))
	}
	for name, want := range map[string]string{
		"TEAM-A.NEXMUX.TEST":        "team-a.nexmux.test",
		"Team-A.Nexmux.Test":        "team-a.nexmux.test",
		"X.NEXMUX.TEST":             "*.nexmux.test",
		"xn--bcher-kva.nexmux.test": "*.nexmux.test",
		"a_b.nexmux.test":           "*.nexmux.test",
		"_a.nexmux.test":            "*.nexmux.test",
		"0.nexmux.test":             "*.nexmux.test",
		label63 + ".nexmux.test":    "*.nexmux.test",
		longest:                     "*.nexmux.test",
		"a-b--c.nexmux.test":        "*.nexmux.test",
	} {
		got := handshakeTo(t, m.addr, name)
		if got.err != nil || got.route != want {
			t.Errorf("%q: route %q, err %v; want route %s", name, got.route, got.err, want)
		}
	}
	// Verified as docker would: the certificate names them in any case.
	for _, name := range []string{"TEAM-A.NEXMUX.TEST", "a_b.nexmux.test", "xn--bcher-kva.nexmux.test"} {
		c, err := tls.Dial("tcp", m.addr, m.tlsConfig(name))
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		c.Close()
	}
}

// An absolute name (one trailing dot; openssl s_client sends it as given,
// Go, curl and browsers strip it) routes as the name without the dot: a
// passthrough route gets the hello byte for byte. (Where TLS ends here,
// crypto/tls then refuses the hello: see the daemon's
// TestTrailingDotSNIGetsACleanAlert.) Two dots, or a name that is no host
// name with a dot after it, route nowhere.
func TestAbsoluteServerNameRoutesAsTheName(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	// The backend reads one record (a Go hello is one) and says nothing.
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				rec := make([]byte, 5)
				if _, err := io.ReadFull(c, rec); err != nil {
					got <- rec
					return
				}
				rec = append(rec, make([]byte, int(rec[3])<<8|int(rec[4]))...)
				_, _ = io.ReadFull(c, rec[5:])
				got <- rec
			}()
		}
	}()
	m := startMuxWith(t, muxConfig{passthrough: backend.Addr().String(), routes: []string{"*.nexmux.test=team-w"}})
	send := func(hello []byte) net.Conn {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	for _, name := range []string{"pt.nexmux.test.", "PT.Nexmux.Test."} {
		hello := helloNaming(t, name)
		send(hello)
		select {
		case b := <-got:
			if !bytes.Equal(b, hello) {
				t.Errorf("%q: the passthrough backend got %q, want the hello", name, b)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: the passthrough backend got no connection", name)
		}
	}
	for _, tc := range []struct {
		name   string
		alert  byte
		reason string
	}{
		{"pt.nexmux.test..", 50, mux.ReasonMalformed}, // decode_error
		{"a b.nexmux.test.", 112, mux.ReasonUnknownSNI},
		{"a..nexmux.test.", 112, mux.ReasonUnknownSNI},
		{"pt.nexmux.test:1.", 112, mux.ReasonUnknownSNI},
	} {
		c := send(helloNaming(t, tc.name))
		var alert [7]byte
		if _, err := io.ReadFull(c, alert[:]); err != nil || alert[0] != 21 || alert[6] != tc.alert {
			t.Errorf("%q: got % x (%v); want alert %d", tc.name, alert, err, tc.alert)
			continue
		}
		m.waitRefusal(t, c.LocalAddr().String(), tc.reason)
	}
}

// helloNaming is a crypto/tls client's ClientHello with its server name
// replaced by name (same length), which crypto/tls would not send as is.
func helloNaming(t *testing.T, name string) []byte {
	t.Helper()
	placeholder := strings.Repeat("q", len(name)-len(".test")) + ".test"
	hello := testnet.ClientHello(t, &tls.Config{ServerName: placeholder})
	if bytes.Count(hello, []byte(placeholder)) != 1 {
		t.Fatal("placeholder server name not found once in the hello")
	}
	i := bytes.Index(hello, []byte(placeholder))
	copy(hello[i:], name)
	return hello
}
