package config

import (
	"strings"
	"testing"
)

// An '@' inside an IPv6 literal's brackets is its zone's, and the colons
// before it the address's: a listen address or backend holding one is no
// user:password@ and is echoed as written, so the problem can be read. A
// password form before the brackets is still hidden.
func TestHideCredentialsLeavesAZoneWithAtReadable(t *testing.T) {
	for _, text := range []string{
		`metrics-listen "[fe80::1%eth0@x]:9090": zone "eth0@x" is not an interface name`,
		`passthrough "p.example.com=[fe80::1%eth0@x]:443": "[fe80::1%eth0@x]:443": zone "eth0@x" is not an interface name`,
		`listen [fe80::1%eth0@x]:8443: bind: no such device`,
	} {
		if got := HideCredentials(text); got != text {
			t.Errorf("HideCredentials(%s)\n = %s\nwant it unchanged", text, got)
		}
	}
	for _, text := range []string{
		`socks5-listen "admin:s3cret@[fe80::1%eth0]:1080": too many colons`,
		`socks5-listen "admin:s3cret@[fe80::1%eth0@x]:1080": too many colons`,
		`passthrough "p.example.com=admin:s3[cret@[::1]:443": too many colons`,
		`passthrough "p.example.com=ad[min:s3cret@backend:443": too many colons`,
		`listen admin:s3cret@[fe80::1%eth0@x]:8443: bind: no such device`,
	} {
		if got := HideCredentials(text); strings.Contains(got, "s3") {
			t.Errorf("HideCredentials(%s)\n = %s\nshows the password", text, got)
		}
	}
}
