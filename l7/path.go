package l7

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nexmux/nexmux/route"
)

// maxDecodeRounds bounds the repeated unescaping of a path; three rounds see
// through "%25252e" and a longer chain is refused outright as hostile.
const maxDecodeRounds = 3

// checkPath refuses a raw request path that could step out of the
// repository prefix it is about to be appended to, in any encoding a server
// behind us might decode: dot segments (also "%2e", "%252e", and Jetty's
// "..;param" form), backslashes (Windows-style separators), NUL and other
// control bytes, invalid UTF-8 (overlong encodings of '.' and '/'),
// Jetty path parameters (';') and encoded slashes. It works on what the client sent, before any decoding by
// net/http, because forwarding rewrites nothing.
func checkPath(raw string) (string, bool) {
	if raw == "" || raw[0] != '/' {
		return "request target must be an absolute path", false
	}
	dec, slash, param := raw, false, false
	for round := 0; ; round++ {
		for i := 0; i < len(dec); i++ {
			if c := dec[i]; c < 0x20 || c == 0x7f || c == '\\' {
				return "control byte or backslash in path", false
			}
		}
		// Overlong forms ("%c0%ae" for '.', "%c0%af" for '/') are how
		// lenient decoders were walked out of their roots; no registry
		// path has invalid UTF-8.
		if !utf8.ValidString(dec) {
			return "invalid UTF-8 in path", false
		}
		for seg := range strings.SplitSeq(dec, "/") {
			if i := strings.IndexByte(seg, ';'); i >= 0 {
				seg, param = seg[:i], true
			}
			if seg == "." || seg == ".." {
				return "dot segment in path", false
			}
		}
		if !strings.Contains(dec, "%") {
			return accept(slash, param)
		}
		// No registry name, tag or digest holds an encoded slash, and a
		// server that decodes it sees another endpoint than the one
		// nexmux judged (upload session, mirror filter, split route).
		slash = slash || strings.Contains(dec, "%2f") || strings.Contains(dec, "%2F")
		if round == maxDecodeRounds {
			return "path is encoded too many times", false
		}
		next, err := url.PathUnescape(dec)
		if err != nil {
			return "malformed percent-encoding in path", false
		}
		if next == dec {
			return accept(slash, param)
		}
		dec = next
	}
}

// accept is checkPath's answer for a path without dot segments, control
// bytes or bad encodings: refused still if it held an encoded slash or a
// path parameter. Jetty takes ";..." as a path parameter and drops it, so
// Nexus would judge another path than nexmux did (upload session or blob,
// the mirror's read-only filter, a split route); no registry name, tag or
// digest holds a ';'.
func accept(slash, param bool) (string, bool) {
	if slash {
		return "encoded slash in path", false
	}
	if param {
		return "path parameter (';') in path", false
	}
	return "", true
}

// queryForwardable reports whether a raw query can go on Nexus's request
// line as it is: no space (the line's separator) and no control byte.
func queryForwardable(q string) bool {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// describeParam reports a raw query naming the parameter "describe":
// Nexus's repository servlet then answers with a description of the
// request, every header included (on mirror names the --mirror-auth-file
// credentials nexmux adds), instead of the registry answer. Names are
// compared as Jetty decodes them ('+', "%XX", Jetty 9's "%uXXXX"), and in
// any case; no registry client sends such a parameter.
func describeParam(q string) bool {
	for q != "" {
		var param string
		if i := strings.IndexAny(q, "&;"); i >= 0 {
			param, q = q[:i], q[i+1:]
		} else {
			param, q = q, ""
		}
		name, _, _ := strings.Cut(param, "=")
		if len(name) >= len("describe") && strings.EqualFold(jettyUnescape(name), "describe") {
			return true
		}
	}
	return false
}

// jettyUnescape decodes a query component as Jetty's UrlEncoded does;
// a malformed escape stays as it is.
func jettyUnescape(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+6 <= len(s) && (s[i+1] == 'u' || s[i+1] == 'U'):
			if n, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil {
				b = utf8.AppendRune(b, rune(n))
				i += 5
				continue
			}
		case c == '%' && i+3 <= len(s):
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				c = byte(n)
				i += 2
			}
		}
		b = append(b, c)
	}
	return string(b)
}

// registryPath reports whether sub ("/v2/...") is a Registry API path.
func registryPath(sub string) bool {
	return sub == "/v2" || sub == "/v1" || strings.HasPrefix(sub, "/v2/") || strings.HasPrefix(sub, "/v1/")
}

// mapRequest turns the raw path a client sent into the repository and the
// path below it. Accepted forms:
//   - "/v2/..." and "/v1/..." (what docker clients send);
//   - "[ctx]/repository/<repo>/v2|v1/..." for one of the route's own
//     repositories, because Nexus hands such URLs out and some clients
//     follow them verbatim.
//
// Everything else is refused: there is no way from a route to Nexus's
// REST API, its UI, or another team's repository.
//
// judged is sub as Jetty decodes it ("blob%73" is "blobs"), on which the
// repository is picked and every other decision is made.
func mapRequest(t route.Target, ctxPath string, r route.Request) (repo, sub, judged string, ok bool) {
	rawPath := r.Path
	if registryPath(rawPath) {
		r.Path = decodedPath(rawPath)
		return t.Pick(r), rawPath, r.Path, true
	}
	rest, found := strings.CutPrefix(rawPath, ctxPath+"/repository/")
	if !found {
		return "", "", "", false
	}
	name, sub, _ := strings.Cut(rest, "/")
	sub = "/" + sub
	if !t.Owns(name) || !registryPath(sub) {
		return "", "", "", false
	}
	return name, sub, decodedPath(sub), true
}

// contentRead reports a GET or HEAD of ".../manifests/<ref>" or
// ".../blobs/<digest>": the Registry API gives them no parameters, and
// nexmux sends them to Nexus without the client's. Nexus's routing rules
// (RoutingRuleHandler) match a proxy request's path with its parameters
// appended, "<path>?k=v", as a whole, so any parameter a BLOCK matcher does
// not foresee (?x=1 after an exact tag, ?x=/ after [^/]+) would let a
// blocked image through; proxy cooperation keys on them too, so each
// spelling would be one more download from the remote. sub is the path
// as judged (decodedPath): Jetty reads "manifest%73" as "manifests".
func contentRead(method, sub string) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	i := strings.LastIndexByte(sub, '/')
	if i <= 0 || i == len(sub)-1 {
		return false
	}
	dir := sub[:i]
	return strings.HasSuffix(dir, "/manifests") || strings.HasSuffix(dir, "/blobs")
}

// decodedPath is raw as a server behind nexmux reads it, unescaped until
// nothing changes (at most maxDecodeRounds times, as checkPath allows): a
// decision made on the path must be made on what Nexus will serve. A
// malformed escape, which checkPath refuses, stays as it is.
func decodedPath(raw string) string {
	for range maxDecodeRounds {
		if !strings.Contains(raw, "%") {
			return raw
		}
		next, err := url.PathUnescape(raw)
		if err != nil || next == raw {
			return raw
		}
		raw = next
	}
	return raw
}
