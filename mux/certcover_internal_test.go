package mux

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
)

// verifyNames are SANs and names that take each of crypto/x509's paths:
// exact, pattern, wildcard, trailing dots, case, underscores, invalid
// labels, IP addresses written as names, bytes that are no UTF-8.
var verifyNames = []string{
	"", ".", "*", "*.", "a", "A", "a.", "a..", ".a", "example.com", "Example.COM", "example.com.",
	"x.example.com", "X.Example.com.", "*.example.com", "*.Example.com", "*.example.com.",
	"x.*.example.com", "*x.example.com", "a.b.example.com", "-a.example.com", "a-.example.com",
	"a_b.example.com", "é.example.com", "\xd7.example.com", "EXAMPLE.\xd7OM", "example.\xd7om",
	"10.0.0.1", "[10.0.0.1]", "::1", "[::1]", "::ffff:10.0.0.1", "10.0.0.01", "[x]", "com", "*.com",
}

// A certificate's names indexed answer as VerifyHostname does, for every
// name against every SAN set of up to two of verifyNames.
func TestVerifyIndexAgreesWithVerifyHostname(t *testing.T) {
	ips := []net.IP{net.ParseIP("10.0.0.1").To4(), net.ParseIP("::1"), {1, 2, 3}}
	var sets [][]string
	for _, a := range verifyNames {
		sets = append(sets, []string{a})
		for _, b := range verifyNames {
			sets = append(sets, []string{a, b})
		}
	}
	for _, sans := range sets {
		for _, withIPs := range []bool{false, true} {
			c := &x509.Certificate{DNSNames: sans}
			if withIPs {
				c.IPAddresses = ips
			}
			x := newVerifyIndex(c)
			for _, h := range append(verifyNames, "10.0.0.2", "0:0::1") {
				if got, want := x.verifies(h), c.VerifyHostname(h) == nil; got != want {
					t.Errorf("SANs %q (IPs %v): %q verifies %v, VerifyHostname says %v", sans, withIPs, h, got, want)
				}
			}
		}
	}
}

// coversAll judges as a VerifyHostname per name of b did.
func TestCoversAllAgreesWithVerifyHostname(t *testing.T) {
	byVerify := func(a, b *x509.Certificate) bool {
		for _, n := range b.DNSNames {
			if a.VerifyHostname(n) != nil {
				return false
			}
		}
		for _, ip := range b.IPAddresses {
			if a.VerifyHostname(ip.String()) != nil {
				return false
			}
		}
		return true
	}
	certs := []*x509.Certificate{
		{DNSNames: []string{"*.example.com"}},
		{DNSNames: []string{"*.example.com", "example.com"}},
		{DNSNames: []string{"A.example.com", "b.example.com."}},
		{DNSNames: []string{"a.example.com", "b.example.com", "x.y.example.com"}},
		{DNSNames: []string{"*.Example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}},
		{DNSNames: []string{"10.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1").To4()}},
		{IPAddresses: []net.IP{net.ParseIP("10.0.0.1").To4(), net.ParseIP("::1")}},
		{DNSNames: []string{"*.example.com", strings.Repeat("a", 70) + ".example.com"}},
	}
	for _, a := range certs {
		for _, b := range certs {
			if got, want := coversAll(a, b), byVerify(a, b); got != want {
				t.Errorf("coversAll(%q %v, %q %v) = %v, VerifyHostname per name says %v", a.DNSNames, a.IPAddresses, b.DNSNames, b.IPAddresses, got, want)
			}
		}
	}
}
