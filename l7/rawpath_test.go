package l7

import (
	"net/url"
	"testing"
)

// wireExactSlow is wireExact without the plainPath shortcut.
func wireExactSlow(raw string) bool {
	dec, err := url.PathUnescape(raw)
	if err != nil {
		return false
	}
	u := url.URL{Path: dec, RawPath: raw}
	return u.EscapedPath() == raw
}

// plainPath's shortcut answers what the full check answers: every path it
// accepts decodes to itself and is written as it is, and wireExact agrees
// with the full check on every byte in every position.
func TestPlainPathShortcut(t *testing.T) {
	paths := []string{"/v2/app/manifests/latest", "/v2/team/app/blobs/sha256:0b1c", "/repository/r/v2/a.b_c-d~e/tags/list", ""}
	for c := 0; c < 256; c++ {
		for _, tmpl := range []string{"/v2/%c", "/v2/a%cb/manifests/x", "%c"} {
			paths = append(paths, fmtByte(tmpl, byte(c)))
		}
	}
	for _, p := range paths {
		if got, want := wireExact(p), wireExactSlow(p); got != want {
			t.Errorf("wireExact(%q) = %v, full check %v", p, got, want)
		}
		if !plainPath(p) {
			continue
		}
		if dec, err := url.PathUnescape(p); err != nil || dec != p {
			t.Errorf("plain path %q decodes to %q, %v", p, dec, err)
		}
		if u := (url.URL{Path: p}); u.EscapedPath() != p {
			t.Errorf("plain path %q is written as %q", p, u.EscapedPath())
		}
	}
}

func fmtByte(tmpl string, c byte) string {
	out := make([]byte, 0, len(tmpl))
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] == '%' && i+1 < len(tmpl) && tmpl[i+1] == 'c' {
			out = append(out, c)
			i++
			continue
		}
		out = append(out, tmpl[i])
	}
	return string(out)
}
