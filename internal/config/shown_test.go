package config

import (
	"strings"
	"testing"
	"time"
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

// A '[' in the user name opens no IPv6 literal: what follows it is no
// address and zone, so the password after it is hidden even when a
// bracketed address comes after the '@'.
func TestHideCredentialsBracketInUserName(t *testing.T) {
	for _, text := range []string{
		`socks5-listen "ad[min:s3cret@[::1]:1080": too many colons`,
		`listen ad[min:s3cret@[::1]:8443: bind: cannot assign requested address`,
	} {
		if got := HideCredentials(text); strings.Contains(got, "s3") {
			t.Errorf("HideCredentials(%s)\n = %s\nshows the password", text, got)
		}
	}
}

// A URL's authority without its scheme ("//user@host") carries userinfo
// even without a ':' before the '@': a token given as the user name is
// hidden.
func TestHideCredentialsSchemelessAuthorityUserOnly(t *testing.T) {
	text := `repository name "//s3cret@nexus:8081" has '/'`
	if got := HideCredentials(text); strings.Contains(got, "s3") {
		t.Errorf("HideCredentials(%s)\n = %s\nshows the token", text, got)
	}
}

// HideCredentials reads a problem in time linear in its length: a value
// of escaped quotes (a route of the operator's own file) once made it
// try each quote as a value's opening one, reading on to the end each
// time, and check sat for a minute on 64 Ki of them.
func TestHideCredentialsManyQuotesLinear(t *testing.T) {
	text := `route "` + strings.Repeat(`\"`, 1<<16) + `a:b c@d"`
	done := make(chan string, 1)
	go func() { done <- HideCredentials(text) }()
	select {
	case got := <-done:
		if strings.Contains(got, "b c@") {
			t.Errorf("HideCredentials shows the password: %q", got[len(got)-20:])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("HideCredentials still reading a 128 KiB problem of escaped quotes after 5 s")
	}
}

// A quote left open earlier in a problem (a path echoed bare) with a '\'
// right before a quoted value once made the value's opening quote read as
// an escaped one: its userinfo was then not found, and the copy of the
// value the dialer echoes bare showed the password.
func TestHideCredentialsStrayQuoteBeforeBackslash(t *testing.T) {
	for _, text := range []string{
		`open /etc/a"b\"admin:pa ss@nexus:8081": lookup admin:pa ss@nexus:8081: no such host`,
		"open /etc/a\"b\n" + `\"admin:pa ss@nexus:8081": lookup admin:pa ss@nexus:8081: no such host`,
		`open /etc/a"b\x\"http://admin:pa ss@nexus:8081": lookup http://admin:pa ss@nexus:8081: no such host`,
	} {
		if got := HideCredentials(text); strings.Contains(got, "pa ss") {
			t.Errorf("HideCredentials(%s)\n = %s\nshows the password", text, got)
		}
	}
}

// A short userinfo (": ") is hidden where it comes before its value's
// '@', not wherever its text occurs in the problem.
func TestHideCredentialsShortUserinfoLeavesTheRest(t *testing.T) {
	text := `socks5-listen ": @x:1:2": want [HOST]:PORT: address : @x:1:2: too many colons in address`
	want := `socks5-listen "xxxxx@x:1:2": want [HOST]:PORT: address xxxxx@x:1:2: too many colons in address`
	if got := HideCredentials(text); got != want {
		t.Errorf("HideCredentials(%s)\n = %s\nwant %s", text, got, want)
	}
}
