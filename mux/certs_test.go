package mux_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/mux"
)

func issue(t *testing.T, ca *certs.CA, validity time.Duration, hosts ...string) tls.Certificate {
	t.Helper()
	return issueBetween(t, ca, time.Now().Add(-time.Hour), time.Now().Add(validity), hosts...)
}

func issueBetween(t *testing.T, ca *certs.CA, from, to time.Time, hosts ...string) tls.Certificate {
	t.Helper()
	p, err := ca.IssueBetween(from, to, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A renewed certificate given beside the old one is served at once: a pair
// valid now beats an expired one for the same name, and of two valid ones
// the one that expires later wins, whatever their order. Expired and
// soon-expiring certificates that still serve a name are warned about.
func TestCertsPreferValidAndRenewed(t *testing.T) {
	ca, err := certs.NewCA("certs test")
	if err != nil {
		t.Fatal(err)
	}
	expired := issue(t, ca, -time.Minute, "*.example.com", "nexus.example.com")
	soon := issue(t, ca, 3*24*time.Hour, "*.example.com", "nexus.example.com")
	renewed := issue(t, ca, 90*24*time.Hour, "*.example.com", "nexus.example.com")
	other := issue(t, ca, -time.Minute, "old.example.org")
	for _, order := range [][]tls.Certificate{{expired, soon, renewed}, {renewed, soon, expired}, {soon, expired, renewed}} {
		cs, err := mux.NewCerts(append(order, other))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"nexus.example.com", "team-a.example.com", ""} { // "": no SNI
			if got := cs.Get(name); got.Leaf.NotAfter != renewed.Leaf.NotAfter {
				t.Errorf("%s served the certificate expiring %v, want the renewed one (%v)", name, got.Leaf.NotAfter, renewed.Leaf.NotAfter)
			}
		}
		// Only an expired one names old.example.org: still served (the
		// client decides), and warned about.
		if got := cs.Get("old.example.org"); got.Leaf.NotAfter != other.Leaf.NotAfter {
			t.Errorf("old.example.org lost its only certificate")
		}
		w := strings.Join(cs.Warnings(14*24*time.Hour), "\n")
		if !strings.Contains(w, "certificate for old.example.org expired on ") {
			t.Errorf("no warning for the expired certificate that still serves a name:\n%s", w)
		}
		if strings.Contains(w, "*.example.com") {
			t.Errorf("warned about certificates the renewed one replaced:\n%s", w)
		}
	}
	cs, err := mux.NewCerts([]tls.Certificate{soon})
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(cs.Warnings(14*24*time.Hour), "\n"); !strings.Contains(w, "certificate for *.example.com,nexus.example.com expires on ") {
		t.Errorf("no warning for a certificate expiring in 3 days:\n%s", w)
	}
	if w := cs.Warnings(time.Hour); len(w) != 0 {
		t.Errorf("warnings for a certificate valid for days: %q", w)
	}
}

// The fallback for clients without SNI (IP literals verify IP SANs) is
// never traded for a pair that lacks a name of the first pair's: a public
// certificate for the host name beside an internal one with the IP keeps
// https://10.0.0.5 working.
func TestNoSNIFallbackKeepsIPSAN(t *testing.T) {
	ca, err := certs.NewCA("certs test")
	if err != nil {
		t.Fatal(err)
	}
	first := issue(t, ca, 365*24*time.Hour, "nexus.example.com", "10.0.0.5")
	other := issue(t, ca, 730*24*time.Hour, "nexus.example.com")
	renewed := issue(t, ca, 800*24*time.Hour, "nexus.example.com", "10.0.0.5")
	cs, err := mux.NewCerts([]tls.Certificate{first, other})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Get("").Leaf.VerifyHostname("10.0.0.5"); err != nil {
		t.Errorf("a client without SNI got a certificate without the first pair's IP SAN: %v", err)
	}
	if got := cs.Get("nexus.example.com"); got.Leaf.NotAfter != other.Leaf.NotAfter {
		t.Errorf("the name is served the certificate expiring %v, want the later one", got.Leaf.NotAfter)
	}
	cs, err = mux.NewCerts([]tls.Certificate{first, other, renewed})
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.Get(""); got.Leaf.NotAfter != renewed.Leaf.NotAfter {
		t.Errorf("clients without SNI kept the first pair, want its renewal (same names)")
	}
	// A first pair without SANs (a legacy CN-only certificate) names
	// nothing another could be checked against: it stays.
	legacy := issue(t, ca, 365*24*time.Hour, "legacy.internal")
	leaf := *legacy.Leaf
	leaf.DNSNames = nil
	legacy.Leaf = &leaf
	unrelated := issue(t, ca, 730*24*time.Hour, "unrelated.example.org")
	if cs, err = mux.NewCerts([]tls.Certificate{legacy, unrelated}); err != nil {
		t.Fatal(err)
	}
	if got := cs.Get(""); got.Leaf != legacy.Leaf {
		t.Errorf("clients without SNI were given %v in place of the first pair, which names nothing", got.Leaf.DNSNames)
	}
	// Its renewal (no SANs either, the same common name) does take over.
	renewedLegacy := issue(t, ca, 800*24*time.Hour, "legacy.internal")
	leaf = *renewedLegacy.Leaf
	leaf.DNSNames = nil
	renewedLegacy.Leaf = &leaf
	if cs, err = mux.NewCerts([]tls.Certificate{legacy, unrelated, renewedLegacy}); err != nil {
		t.Fatal(err)
	}
	if got := cs.Get(""); got.Leaf != renewedLegacy.Leaf {
		t.Errorf("a CN-only first pair's renewal did not take over the fallback")
	}
}

// A renewal as a wildcard certificate beside an old pair for one host: the
// old pair, once expired, no longer wins the name only because it names it
// exactly; clients get the valid wildcard instead of a certificate they
// refuse.
func TestExpiredExactYieldsToValidWildcard(t *testing.T) {
	ca, err := certs.NewCA("certs test")
	if err != nil {
		t.Fatal(err)
	}
	old := issue(t, ca, -time.Minute, "team-a.example.com")
	wild := issue(t, ca, 90*24*time.Hour, "*.example.com")
	valid := issue(t, ca, 30*24*time.Hour, "team-b.example.com")
	for _, order := range [][]tls.Certificate{{old, wild, valid}, {wild, valid, old}} {
		cs, err := mux.NewCerts(order)
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.Get("team-a.example.com"); got.Leaf.NotAfter != wild.Leaf.NotAfter {
			t.Errorf("team-a.example.com served the certificate expiring %v, want the valid wildcard (%v)", got.Leaf.NotAfter, wild.Leaf.NotAfter)
		}
		// A valid exact pair keeps its name.
		if got := cs.Get("team-b.example.com"); got.Leaf.NotAfter != valid.Leaf.NotAfter {
			t.Errorf("team-b.example.com lost its own valid certificate to the wildcard")
		}
	}
}

// Clients without SNI get what a client naming the first pair's host
// gets: once that pair has expired, a valid wildcard renewal that covers
// every name it has (its IP SANs too) serves them, and the expired pair
// is no longer warned about. A valid first pair keeps them, as a valid
// exact pair keeps its name.
func TestNoSNIFallbackYieldsToValidWildcard(t *testing.T) {
	ca, err := certs.NewCA("certs test")
	if err != nil {
		t.Fatal(err)
	}
	old := issue(t, ca, -time.Minute, "team-a.example.com", "10.0.0.5")
	wild := issue(t, ca, 90*24*time.Hour, "*.example.com", "10.0.0.5")
	for _, order := range [][]tls.Certificate{{old, wild}, {old, wild, old}} {
		cs, err := mux.NewCerts(order)
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.Get(""); got.Leaf.NotAfter != wild.Leaf.NotAfter {
			t.Errorf("clients without SNI got the certificate expiring %v, want the valid wildcard (%v)", got.Leaf.NotAfter, wild.Leaf.NotAfter)
		}
		if w := cs.Warnings(14 * 24 * time.Hour); len(w) != 0 {
			t.Errorf("warned about a pair no client is served: %q", w)
		}
	}
	// A wildcard without the first pair's IP SAN would fail every client
	// that dialled the address: the expired pair stays.
	noIP := issue(t, ca, 90*24*time.Hour, "*.example.com")
	cs, err := mux.NewCerts([]tls.Certificate{old, noIP})
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.Get(""); got.Leaf != old.Leaf {
		t.Errorf("clients without SNI were given a wildcard without the first pair's IP SAN")
	}
	// A depth the wildcard does not cover: the expired pair stays.
	deep := issue(t, ca, -time.Minute, "a.team-a.example.com", "10.0.0.5")
	if cs, err = mux.NewCerts([]tls.Certificate{deep, wild}); err != nil {
		t.Fatal(err)
	}
	if got := cs.Get(""); got.Leaf != deep.Leaf {
		t.Errorf("a wildcard one label up took over a name it does not cover")
	}
	// A first pair still valid keeps clients without SNI.
	valid := issue(t, ca, 30*24*time.Hour, "team-a.example.com", "10.0.0.5")
	if cs, err = mux.NewCerts([]tls.Certificate{valid, wild}); err != nil {
		t.Fatal(err)
	}
	if got := cs.Get(""); got.Leaf != valid.Leaf {
		t.Errorf("a valid first pair lost clients without SNI to a wildcard")
	}
}

// A long-running process chooses again when a pair's validity changes: a
// renewal not yet valid at start takes over once it is, and the expiry
// warning of a served pair comes back daily until it is replaced.
func TestCertsChosenAgainWhenValidityChanges(t *testing.T) {
	ca, err := certs.NewCA("certs test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	old := issueBetween(t, ca, now.Add(-time.Hour), now.Add(time.Hour), "a.example.com")
	renewal := issueBetween(t, ca, now.Add(30*time.Minute), now.Add(90*24*time.Hour), "a.example.com")
	cs, err := mux.NewCerts([]tls.Certificate{old, renewal})
	if err != nil {
		t.Fatal(err)
	}
	soon := 14 * 24 * time.Hour
	if got := cs.Get("a.example.com").Leaf.NotAfter; !got.Equal(old.Leaf.NotAfter) {
		t.Fatalf("served the pair expiring %v before the renewal is valid", got)
	}
	if got := cs.NextCheck(soon); !got.Equal(renewal.Leaf.NotBefore) {
		t.Fatalf("next check %v, want when the renewal becomes valid (%v)", got, renewal.Leaf.NotBefore)
	}
	if w := cs.Warnings(soon); len(w) != 1 || !strings.Contains(w[0], "expires on") {
		t.Fatalf("warnings before the renewal: %q", w)
	}
	later := cs.ChosenAt(renewal.Leaf.NotBefore.Add(time.Second))
	if got := later.Get("a.example.com").Leaf.NotAfter; !got.Equal(renewal.Leaf.NotAfter) {
		t.Fatalf("served the pair expiring %v once the renewal is valid", got)
	}
	if w := later.Warnings(soon); len(w) != 0 {
		t.Fatalf("warned about a replaced pair: %q", w)
	}
	if got := later.NextCheck(soon); !got.Equal(old.Leaf.NotAfter) {
		t.Fatalf("next check %v, want when the old pair expires (%v)", got, old.Leaf.NotAfter)
	}
	last := later.ChosenAt(old.Leaf.NotAfter.Add(time.Second))
	if got, want := last.NextCheck(soon), renewal.Leaf.NotAfter.Add(-soon); !got.Equal(want) {
		t.Fatalf("next check %v, want when the renewal comes within %v of its expiry (%v)", got, soon, want)
	}

	// Alone and about to expire: warned about again a day later.
	alone, err := mux.NewCerts([]tls.Certificate{issueBetween(t, ca, now.Add(-time.Hour), now.Add(72*time.Hour), "b.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if next := alone.NextCheck(soon); next.Sub(now) < 23*time.Hour || next.Sub(now) > 25*time.Hour {
		t.Fatalf("next check of a pair expiring in 3 days: %v, want in a day", next)
	}
	if got := (*mux.Certs)(nil).NextCheck(soon); !got.IsZero() {
		t.Fatalf("no certificates: next check %v", got)
	}
}

// An ECDSA and an RSA pair for the same name (as nginx and most servers
// are given them) are both served: each client gets the one it can verify
// a signature of, as crypto/tls itself picks among Config.Certificates. A
// TLS 1.2 client offering only ECDHE_RSA suites cannot use an ECDSA
// certificate, nor one offering only ECDHE_ECDSA suites an RSA one; an
// exact pair the client cannot use yields to a wildcard it can.
func TestRSAAndECDSAForOneNameServedToEachClient(t *testing.T) {
	ca, err := certs.NewCA("key types test")
	if err != nil {
		t.Fatal(err)
	}
	// The ECDSA pairs expire later, so they are the names' first choice
	// whatever the order.
	ecdsaPair, err := ca.IssueTLS("team-a.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	ecdsaWild, err := ca.IssueTLS("*.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	rsaPair := rsaCertificate(t, "team-a.nexmux.test")
	rsaSuites := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	ecdsaSuites := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	for _, tc := range []struct {
		name    string
		pairs   []tls.Certificate
		sni     string // "": none, on the default route
		suites  []uint16
		wantRSA bool
	}{
		{"rsa-only client, ecdsa first", []tls.Certificate{ecdsaPair, rsaPair}, "team-a.nexmux.test", rsaSuites, true},
		{"rsa-only client, rsa first", []tls.Certificate{rsaPair, ecdsaPair}, "team-a.nexmux.test", rsaSuites, true},
		{"ecdsa-only client, rsa first", []tls.Certificate{rsaPair, ecdsaPair}, "team-a.nexmux.test", ecdsaSuites, false},
		{"rsa-only client, no SNI", []tls.Certificate{ecdsaPair, rsaPair}, "", rsaSuites, true},
		{"ecdsa-only client, rsa exact beside ecdsa wildcard", []tls.Certificate{rsaPair, ecdsaWild}, "team-a.nexmux.test", ecdsaSuites, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMuxWith(t, muxConfig{certs: tc.pairs, defaultRoute: "team-a"})
			cfg := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true,
				MaxVersion: tls.VersionTLS12, CipherSuites: tc.suites}
			c, err := tls.Dial("tcp", m.addr, cfg)
			if err != nil {
				t.Fatalf("handshake failed although a pair the client can use names %q: %v", tc.sni, err)
			}
			defer c.Close()
			leaf := c.ConnectionState().PeerCertificates[0]
			if gotRSA := leaf.PublicKeyAlgorithm == x509.RSA; gotRSA != tc.wantRSA {
				t.Errorf("served a %v certificate for %q, want RSA %v", leaf.PublicKeyAlgorithm, tc.sni, tc.wantRSA)
			}
		})
	}
}
