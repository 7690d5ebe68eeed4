package mux_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nexmux/nexmux/mux"
)

// coverPairs are certificate sets of n names where building the fallback
// compares whole pairs with each other: a first pair not valid now (is
// another covering it all?), a renewal given beside the old pair (both
// the fallback's candidates), and a pair naming n IP addresses beside
// its renewal (clients without SNI).
func coverPairs(n int) []coverCase {
	now := time.Now()
	names := make([]string, n)
	ips := make([]net.IP, n)
	for i := range names {
		names[i] = fmt.Sprintf("r%05d.example.com", i)
		ips[i] = net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))
	}
	leaf := func(from, to time.Time, dns []string, ip []net.IP) tls.Certificate {
		return tls.Certificate{Certificate: [][]byte{nil}, Leaf: &x509.Certificate{
			DNSNames: dns, IPAddresses: ip, NotBefore: from, NotAfter: to,
		}}
	}
	expired := leaf(now.Add(-48*time.Hour), now.Add(-time.Hour), names, nil)
	old := leaf(now.Add(-time.Hour), now.Add(24*time.Hour), names, nil)
	renewed := leaf(now.Add(-time.Hour), now.Add(90*24*time.Hour), names, nil)
	// Of another key type than its renewal: it still serves the clients
	// that cannot use the renewal's.
	old.Leaf.PublicKeyAlgorithm, renewed.Leaf.PublicKeyAlgorithm = x509.RSA, x509.ECDSA
	return []coverCase{
		{"expired first", []tls.Certificate{expired, leaf(now.Add(-time.Hour), now.Add(time.Hour), []string{"*.example.com"}, nil)}},
		{"renewal beside", []tls.Certificate{old, renewed}},
		{"IP SANs renewed", []tls.Certificate{leaf(now.Add(-time.Hour), now.Add(time.Hour), nil, ips), leaf(now.Add(-time.Hour), now.Add(48*time.Hour), nil, ips)}},
		{"one name a pair", onePairEach(names, now)},
		{"all in one pair", []tls.Certificate{renewed}},
	}
}

type coverCase struct {
	name  string
	pairs []tls.Certificate
}

func onePairEach(names []string, now time.Time) []tls.Certificate {
	out := make([]tls.Certificate, len(names))
	for i, n := range names {
		out[i] = tls.Certificate{Certificate: [][]byte{nil}, Leaf: &x509.Certificate{
			DNSNames: []string{n}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		}}
	}
	return out
}

// BenchmarkNewCertsCoverage builds the certificates of a 10,000-route
// table (a documented target) as start-up and every reload do, and lists
// their IP addresses as `nexmux check` does.
func BenchmarkNewCertsCoverage(b *testing.B) {
	for _, cc := range coverPairs(10000) {
		b.Run(cc.name, func(b *testing.B) {
			for b.Loop() {
				c, err := mux.NewCerts(cc.pairs)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.IPs()
			}
		})
	}
}

// A table of 10,000 names, each pair compared whole with the fallback,
// chooses as a small one does (the valid wildcard beside an expired
// first pair, the renewal beside the old pair, every IP address once in
// order) at a cost that grows with the names, not with their square:
// crypto/x509's VerifyHostname for each name of one pair against the
// other's list allocated per name compared.
func TestNewCertsLargeTable(t *testing.T) {
	const n = 10000
	cases := coverPairs(n)
	want := map[string]func(t *testing.T, c *mux.Certs, pairs []tls.Certificate){
		"expired first": func(t *testing.T, c *mux.Certs, pairs []tls.Certificate) {
			if got := c.Get(""); got.Leaf != pairs[1].Leaf {
				t.Errorf("clients without SNI get the pair naming %d names, want the valid wildcard covering the expired first pair", len(got.Leaf.DNSNames))
			}
		},
		"renewal beside": func(t *testing.T, c *mux.Certs, pairs []tls.Certificate) {
			if got := c.Get(""); got.Leaf != pairs[1].Leaf {
				t.Errorf("clients without SNI get the pair expiring %v, want the renewal", got.Leaf.NotAfter)
			}
			// The old pair (RSA) still serves the fallback's names to
			// a client that cannot use the renewal (ECDSA): warned of.
			if w := c.Warnings(48 * time.Hour); len(w) != 1 {
				t.Errorf("%d warnings, want 1 (the old pair beside its renewal, expiring within 48h)", len(w))
			}
		},
		"IP SANs renewed": func(t *testing.T, c *mux.Certs, pairs []tls.Certificate) {
			if got := c.Get(""); got.Leaf != pairs[1].Leaf {
				t.Errorf("clients without SNI get the pair expiring %v, want the renewal", got.Leaf.NotAfter)
			}
			ips := c.IPs()
			if len(ips) != n || ips[0] != "10.0.0.0" || ips[n-1] != pairs[0].Leaf.IPAddresses[n-1].String() {
				t.Errorf("IPs() lists %d addresses, want the %d of the pairs once, in order", len(ips), n)
			}
		},
	}
	for _, cc := range cases {
		check := want[cc.name]
		if check == nil {
			continue
		}
		var c *mux.Certs
		allocs := testing.AllocsPerRun(1, func() {
			var err error
			if c, err = mux.NewCerts(cc.pairs); err != nil {
				t.Fatal(err)
			}
			_ = c.IPs()
		})
		// A few per name and pair, whatever compares them.
		if limit := float64(20 * n * len(cc.pairs)); allocs > limit {
			t.Errorf("%s: %.0f allocations for %d names, want at most %.0f: the comparisons grow with the square of the names", cc.name, allocs, n, limit)
		}
		t.Run(cc.name, func(t *testing.T) { check(t, c, cc.pairs) })
	}
}
