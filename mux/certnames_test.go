package mux_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nexmux/nexmux/mux"
)

// leafPair is a pair whose parsed leaf names names: NewCerts reads only
// the leaf, so no key or signature is made (thousands of SANs are cheap).
func leafPair(names ...string) tls.Certificate {
	now := time.Now()
	return tls.Certificate{Certificate: [][]byte{nil}, Leaf: &x509.Certificate{
		DNSNames: names, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	}}
}

// Names lists every DNS name of the pairs once, lowercased and without a
// trailing dot, in the order it first appears.
func TestCertsNamesInOrderOfFirstAppearance(t *testing.T) {
	c, err := mux.NewCerts([]tls.Certificate{
		leafPair("B.example.com.", "a.example.com", "*.x.example.com", "b.example.com"),
		leafPair("a.example.com", "c.example.com", "*.X.example.com.", "b.example.com"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b.example.com", "a.example.com", "*.x.example.com", "c.example.com"}
	if got := c.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	// Many names, each given twice: every one once, in order.
	var many, wantMany []string
	for i := range 5000 {
		n := fmt.Sprintf("h%d.example.com", i)
		many, wantMany = append(many, n, n+"."), append(wantMany, n)
	}
	if c, err = mux.NewCerts([]tls.Certificate{leafPair(many...)}); err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !slices.Equal(got, wantMany) {
		t.Errorf("Names() of %d names given twice: %d names, want %d in order", len(wantMany), len(got), len(wantMany))
	}
}

// BenchmarkNewCertsManyNames indexes 20,000 host names: in one pair, and
// in 2,000 pairs of 10 that each share half their names with the next.
// The names were de-duplicated by a search of those seen so far, and a
// pair's names looked up in the first pair's one by one: both quadratic.
func BenchmarkNewCertsManyNames(b *testing.B) {
	const total = 20000
	names := make([]string, total)
	for i := range names {
		names[i] = fmt.Sprintf("h%d.example.com", i)
	}
	many := make([]tls.Certificate, total/10)
	for i := range many {
		many[i] = leafPair(names[i*10 : i*10+10]...)
		if i > 0 {
			many[i].Leaf.DNSNames = append(names[i*10-5:i*10:i*10], many[i].Leaf.DNSNames...)
		}
	}
	for _, bc := range []struct {
		name  string
		pairs []tls.Certificate
	}{{"one pair", []tls.Certificate{leafPair(names...)}}, {"2000 pairs", many}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				c, err := mux.NewCerts(bc.pairs)
				if err != nil {
					b.Fatal(err)
				}
				if len(c.Names()) != total {
					b.Fatalf("%d names, want %d", len(c.Names()), total)
				}
			}
		})
	}
}
