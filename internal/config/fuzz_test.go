package config

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzHideCredentials: a value carrying user:password@ in a problem as
// check prints it, quoted (%q) as problems quote values and, beside that
// or alone, bare as the dialer's and the file system's errors echo them,
// never shows the password with its ':' and '@', raw or as %q escapes it;
// and text without '@' is left as it is.
func FuzzHideCredentials(f *testing.F) {
	for _, s := range []struct {
		pre, scheme, user, pass, host, post string
		quoted, bare                        bool
	}{
		{"upstream ", "http://", "admin", "s3cret", "10.1:8081", `: "10.1" is not a host name or IP address`, true, false},
		{"socks5-listen ", "", "admin", "s3cret", "[fe80::1%eth0]:1080", ": too many colons", true, false},
		{"socks5-listen ", "", "ad[min", "s3cret", "[::1]:1080", ": too many colons", true, false},
		{`passthrough "p.example.com=`, "", "admin", "s3[cret", "[::1]:443", `": too many colons`, false, true},
		{"listen ", "", "admin", "s3cret", "[fe80::1%eth0@x]:8443", ": bind: no such device", false, true},
		{"repository name ", "//", "", "s3cret", "nexus:8081", " has '/'", true, false},
		{"upstream ", "https://", "a b", `p"w d`, "nexus:8081/x?token=1", ": dial tcp: lookup nexus", true, true},
		{"mirror-auth-file ", "", "u", "pw@x", "host", ": no such file", true, true},
		{`open /etc/a"b.pem: upstream `, "http://", "admin", "pa ss", "nexus:8081", ": too many colons", true, false},
		{`\`, "", "00", " ", "0", "0", true, true},
	} {
		f.Add(s.pre, s.scheme, s.user, s.pass, s.host, s.post, s.quoted, s.bare)
	}
	f.Fuzz(func(t *testing.T, pre, scheme, user, pass, host, post string, quoted, bare bool) {
		if pass == "" || !quoted && !bare {
			return
		}
		// The message around the value, its user and host must not hold
		// the password themselves: what shows is then the value's.
		for _, s := range []string{pre, scheme, user, host, post} {
			if strings.Contains(s, pass) {
				return
			}
		}
		// "[fe80::1%eth0:pw@x]:80" is an IPv6 literal whose zone holds the
		// ':' and '@' (carriesUserinfo): echoed as written by design.
		if strings.Contains(scheme+user, "[") && strings.Contains(scheme+user+pass, "%") {
			return
		}
		v := scheme + user + ":" + pass + "@" + host
		// Alone, a bare value is cut in words at blanks and quotes: it is
		// hidden where a quoted copy of it is found, and not otherwise.
		if !quoted && strings.ContainsAny(v, wordEnds) {
			return
		}
		text := pre
		if quoted {
			text += strconv.Quote(v)
		}
		if bare {
			text += ": " + v
		}
		text += post
		got := HideCredentials(text)
		shown := ":" + pass + "@"
		escaped := strings.Trim(strconv.Quote(shown), `"`)
		if strings.Contains(got, shown) || strings.Contains(got, escaped) {
			t.Fatalf("HideCredentials(%q)\n = %q\nshows the password %q", text, got, pass)
		}
		if plain := strings.ReplaceAll(text, "@", "at"); HideCredentials(plain) != plain {
			t.Fatalf("HideCredentials(%q) = %q: changed a text without '@'", plain, HideCredentials(plain))
		}
	})
}
