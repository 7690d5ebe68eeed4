package mux

import "testing"

// ipLike tells IP addresses sent as server names from host names, IPv6
// included, without parsing names that end in a letter.
func TestIPLike(t *testing.T) {
	for name, want := range map[string]bool{
		"127.0.0.1": true, "::1": true, "fe80::a": true, "2001:db8::ffff": true,
		"": false, "team-a.nexmux.test": false, "host-1": false, "1.2.3.4.nip.io": false,
		"10.0.0.1.": false, "a:b": false, "999.1.1.1": false,
		// Bracketed, as a URL writes it: crypto/tls's client takes it for
		// an address and sends no name.
		"[::1]": true, "[fe80::1%eth0]": true, "fe80::1%eth0": true,
		"[example.com]": false, "[::1]:443": false, "[::1": false, "[]": false,
	} {
		if got := ipLike(name); got != want {
			t.Errorf("ipLike(%q) = %v, want %v", name, got, want)
		}
	}
}
