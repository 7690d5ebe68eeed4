package l7

import "net/url"

// wireExact reports whether raw, set as an outgoing URL's RawPath beside its
// decoding, goes on the wire byte for byte. net/url silently re-escapes
// the decoded path when RawPath is not a valid encoding ("#" becomes
// "%23", a raw space "%20"): Nexus would then see another path than the
// client sent, so such a request is refused instead.
func wireExact(raw string) bool {
	dec, err := url.PathUnescape(raw)
	if err != nil {
		return false
	}
	u := url.URL{Path: dec, RawPath: raw}
	return u.EscapedPath() == raw
}
