package l7

import "net/url"

// wireExact reports whether raw, set as an outgoing URL's RawPath beside its
// decoding, goes on the wire byte for byte. net/url silently re-escapes
// the decoded path when RawPath is not a valid encoding ("#" becomes
// "%23", a raw space "%20"): Nexus would then see another path than the
// client sent, so such a request is refused instead.
func wireExact(raw string) bool {
	if plainPath(raw) {
		return true
	}
	dec, err := url.PathUnescape(raw)
	if err != nil {
		return false
	}
	u := url.URL{Path: dec, RawPath: raw}
	return u.EscapedPath() == raw
}

// plainPath reports a path of letters, digits, "-._~", "/" and ":" only
// (every registry path of names, tags and digests): it decodes to itself
// and net/url writes it as it is, so neither needs checking.
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		switch c {
		case '-', '.', '_', '~', '/', ':':
			continue
		}
		return false
	}
	return true
}
