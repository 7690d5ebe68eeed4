package l7

import (
	"strings"
	"testing"
)

// The WWW-Authenticate oracle of FuzzRewrite. It reads challenges with
// parsers of its own (RFC 9110 §11 strictly, and two lenient readings
// clients use), not with rewrite.go's scanner, so a slip in that scanner
// cannot hide itself.

// authParam is one auth-param; raw is its value as written (a token, or a
// quoted-string with its quotes).
type authParam struct{ name, raw string }

type authChallenge struct {
	scheme  string
	token68 string
	params  []authParam
}

// parseChallenges parses v as RFC 9110's
//
//	WWW-Authenticate = #challenge
//	challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param = token BWS "=" BWS ( token / quoted-string )
//
// false when v is no such list. After a comma, "token BWS =" continues
// the current challenge's params; anything else starts a new challenge.
func parseChallenges(v string) ([]authChallenge, bool) {
	var out []authChallenge
	i := 0
	for {
		i = skipListSep(v, i)
		if i == len(v) {
			return out, true
		}
		s := i
		for i < len(v) && tokenByte(v[i]) {
			i++
		}
		if s == i {
			return nil, false
		}
		c := authChallenge{scheme: v[s:i]}
		if k := skipOWS(v, i); k == len(v) || v[k] == ',' {
			out = append(out, c)
			i = k
			continue
		}
		if v[i] != ' ' {
			return nil, false
		}
		for i < len(v) && v[i] == ' ' {
			i++
		}
		if p, next, ok := parseAuthParam(v, i); ok {
			c.params = append(c.params, p)
			i = next
			for {
				k := skipOWS(v, i)
				if k == len(v) {
					i = k
					break
				}
				if v[k] != ',' {
					return nil, false
				}
				m := skipListSep(v, k)
				if m == len(v) {
					i = m
					break
				}
				p, next, ok := parseAuthParam(v, m)
				if !ok {
					i = k // the next challenge's
					break
				}
				c.params = append(c.params, p)
				i = next
			}
		} else {
			s := i
			for i < len(v) && token68Byte(v[i]) {
				i++
			}
			if s == i {
				return nil, false
			}
			for i < len(v) && v[i] == '=' {
				i++
			}
			c.token68 = v[s:i]
			if k := skipOWS(v, i); k < len(v) && v[k] != ',' {
				return nil, false
			}
		}
		out = append(out, c)
	}
}

func parseAuthParam(v string, i int) (authParam, int, bool) {
	s := i
	for i < len(v) && tokenByte(v[i]) {
		i++
	}
	if s == i {
		return authParam{}, 0, false
	}
	name := v[s:i]
	i = skipOWS(v, i)
	if i == len(v) || v[i] != '=' {
		return authParam{}, 0, false
	}
	i = skipOWS(v, i+1)
	s = i
	if i < len(v) && v[i] == '"' {
		for i++; ; i++ {
			switch {
			case i >= len(v):
				return authParam{}, 0, false
			case v[i] == '"':
				return authParam{name, v[s : i+1]}, i + 1, true
			case v[i] == '\\':
				// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
				if i+1 >= len(v) || !qdByte(v[i+1]) && v[i+1] != '"' && v[i+1] != '\\' {
					return authParam{}, 0, false
				}
				i++
			case !qdByte(v[i]):
				return authParam{}, 0, false
			}
		}
	}
	for i < len(v) && tokenByte(v[i]) {
		i++
	}
	if s == i {
		return authParam{}, 0, false
	}
	return authParam{name, v[s:i]}, i, true
}

// qdByte: qdtext (HTAB, SP, VCHAR but '"' and '\', obs-text).
func qdByte(c byte) bool {
	return c == '\t' || c == ' ' || c >= 0x21 && c != '"' && c != '\\' && c != 0x7f
}

func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func token68Byte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0
}

func skipOWS(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

// skipListSep skips OWS and the empty list elements "#rule" allows.
func skipListSep(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == ',') {
		i++
	}
	return i
}

// unquoteValue is a param value's meaning: a quoted-string's content with
// its quoted-pairs undone, a token as it is.
func unquoteValue(raw string) string {
	if !strings.HasPrefix(raw, `"`) {
		return raw
	}
	var b strings.Builder
	for i := 1; i < len(raw)-1; i++ {
		if raw[i] == '\\' {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

// foldContains is a case-insensitive (ASCII) strings.Contains.
func foldContains(s, sub string) bool {
	return strings.Contains(asciiLower(s), sub)
}

// serviceNamesNexus reports a service value the product's contract
// replaces: a URL (a path, or "scheme:..."), or a host of this Nexus or
// the public name, with or without a port (README: "its service when that
// is a URL or Nexus's own host").
func serviceNamesNexus(val string, hostnames []string) bool {
	if strings.HasPrefix(val, "/") {
		return true
	}
	for i := 0; i < len(val); i++ {
		c := val[i]
		if c == ':' && i > 0 {
			return true
		}
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			break
		}
	}
	// host[:port] only: "nexus/x" is a relative path, no host.
	host, _, _ := strings.Cut(val, ":")
	host = strings.TrimSuffix(asciiLower(host), ".")
	for _, h := range hostnames {
		if host == h {
			return true
		}
	}
	return false
}

// lenientBearerRealms returns what lenient readings of v take for the realm
// of a Bearer challenge, the one its client sends credentials to:
//   - a list splitter as Python's parse_http_list (requests'
//     parse_dict_header): a '"' anywhere toggles quoting, then each element
//     is "[scheme SP] name=value" cut at the first '=', the params of the
//     last scheme before it.
//   - distribution's challenge parser (docker, containerd), started at
//     every element the splitter found: scheme, then name=value pairs
//     (token or quoted-string values) separated by commas.
func lenientBearerRealms(v string) [2][]string {
	var r [2][]string
	scheme := ""
	var starts []int
	var items []string
	inQuote, escape, start := false, false, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escape:
			escape = false
		case inQuote && c == '\\':
			escape = true
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			items, starts = append(items, v[start:i]), append(starts, start)
			start = i + 1
		}
	}
	items, starts = append(items, v[start:]), append(starts, start)
	for n, it := range items {
		it = strings.Trim(it, " \t")
		j := 0
		for j < len(it) && tokenByte(it[j]) {
			j++
		}
		if j > 0 && (j == len(it) || it[j] == ' ' || it[j] == '\t') {
			scheme = it[:j]
			it = strings.TrimLeft(it[j:], " \t")
		}
		if name, val, ok := strings.Cut(it, "="); ok && strings.EqualFold(scheme, "bearer") && strings.EqualFold(strings.Trim(name, " \t"), "realm") {
			val = strings.Trim(val, " \t")
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(val[1 : len(val)-1])
			}
			r[0] = append(r[0], val)
		}
		if s, params := distributionParse(v[starts[n]:]); strings.EqualFold(s, "bearer") {
			if realm, ok := params["realm"]; ok {
				r[1] = append(r[1], realm)
			}
		}
	}
	return r
}

// distributionParse is distribution's parseValueAndParams
// (registry/client/auth/challenge/authchallenge.go): lowercase keys, the
// last of a repeated one wins.
func distributionParse(s string) (string, map[string]string) {
	params := map[string]string{}
	readToken := func(s string) (string, string) {
		i := 0
		for i < len(s) && tokenByte(s[i]) {
			i++
		}
		return s[:i], s[i:]
	}
	skip := func(s string) string { return strings.TrimLeft(s, " \t") }
	scheme, s := readToken(skip(s))
	if scheme == "" {
		return "", params
	}
	for {
		var key, value string
		key, s = readToken(skip(s))
		if key == "" {
			return scheme, params
		}
		s = skip(s)
		if !strings.HasPrefix(s, "=") {
			return scheme, params
		}
		s = skip(s[1:])
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			closed := false
			i := 1
			for ; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if !closed {
				return scheme, params
			}
			value, s = b.String(), s[i+1:]
		} else {
			value, s = readToken(s)
		}
		if value == "" {
			return scheme, params
		}
		params[asciiLower(key)] = value
		s = skip(s)
		if !strings.HasPrefix(s, ",") {
			return scheme, params
		}
		s = s[1:]
	}
}

// checkChallenge is FuzzRewrite's oracle for rewriteChallenge(u) = out.
// The product's contract (README "Headers towards Nexus", rewriteChallenge):
// once a value holds a Bearer challenge, every realm in it (a Basic one's
// too, and a foreign host's: credentials go nowhere else) names exactly
// p.base+"/v2/token", and a service that is a URL or names Nexus's or the
// public host does as well; everything else is kept byte for byte.
func checkChallenge(t *testing.T, p *publicURLs, u, out string) {
	t.Helper()
	token := p.base + "/v2/token"
	quoted := `"` + token + `"`
	mayBearer := foldContains(u, "bearer")
	if !mayBearer && out != u {
		t.Fatalf("rewriteChallenge(%q) = %q: no Bearer challenge, yet changed", u, out)
	}
	if out != u && !strings.Contains(out, quoted) {
		t.Fatalf("rewriteChallenge(%q) = %q: changed, but names no %s", u, out, quoted)
	}
	// (5) Nothing to inject: no control byte the value did not hold,
	// and, below, whatever parsed still parses.
	for c := 0; c < 0x80; c++ {
		if (c < 0x20 || c == 0x7f) && strings.Count(out, string(rune(c))) > strings.Count(u, string(rune(c))) {
			t.Fatalf("rewriteChallenge(%q) = %q gained byte %#x", u, out, c)
		}
	}
	if again := p.rewriteChallenge(out); again != out {
		t.Fatalf("rewriteChallenge not idempotent: %q -> %q -> %q", u, out, again)
	}
	// However a lenient client reads the result, a Bearer challenge's
	// realm (any realm of its value) leads to the public name.
	for k, realms := range lenientBearerRealms(out) {
		for _, r := range realms {
			if !strings.HasPrefix(strings.TrimPrefix(r, `"`), token) {
				t.Fatalf("rewriteChallenge(%q) = %q: lenient reading %d sees realm %q", u, out, k, r)
			}
		}
	}
	in, ok := parseChallenges(u)
	if !ok {
		return
	}
	got, ok := parseChallenges(out)
	if !ok {
		t.Fatalf("rewriteChallenge(%q) = %q: no longer parses as RFC 9110 challenges", u, out)
	}
	// (4) The same challenges, in order.
	if len(got) != len(in) {
		t.Fatalf("rewriteChallenge(%q) = %q: %d challenges, was %d", u, out, len(got), len(in))
	}
	bearer := false
	for _, c := range in {
		bearer = bearer || strings.EqualFold(c.scheme, "bearer")
	}
	for n, c := range in {
		g := got[n]
		if g.scheme != c.scheme {
			t.Fatalf("rewriteChallenge(%q) = %q: challenge %d scheme %q, was %q", u, out, n, g.scheme, c.scheme)
		}
		if c.token68 != "" {
			// "realm=" is a token68 to RFC 9110 but an empty realm to
			// lenient clients: the product gives it the token endpoint.
			if g.token68 == c.token68 && len(g.params) == 0 {
				continue
			}
			name := strings.TrimRight(c.token68, "=")
			if mayBearer && strings.EqualFold(name, "realm") && g.token68 == "" && len(g.params) == 1 && g.params[0] == (authParam{name, quoted}) {
				continue
			}
			t.Fatalf("rewriteChallenge(%q) = %q: challenge %d token68 %q became %+v", u, out, n, c.token68, g)
		}
		if g.token68 != "" || len(g.params) != len(c.params) {
			t.Fatalf("rewriteChallenge(%q) = %q: challenge %d params %+v, were %+v", u, out, n, g.params, c.params)
		}
		for k, a := range c.params {
			b := g.params[k]
			if b.name != a.name {
				t.Fatalf("rewriteChallenge(%q) = %q: param %d of challenge %d is %q, was %q", u, out, k, n, b.name, a.name)
			}
			kept, replaced := b.raw == a.raw, b.raw == quoted
			must, may := false, false
			switch {
			case strings.EqualFold(a.name, "realm"):
				must, may = bearer, mayBearer
			case strings.EqualFold(a.name, "service"):
				// Judged on the value's meaning and on its text: where they
				// differ (quoted-pairs) either reading may decide, as may
				// the product's host normalisation (%XX, IP spellings).
				val, text := unquoteValue(a.raw), strings.Trim(a.raw, `"`)
				must = bearer && serviceNamesNexus(val, p.hostnames) && serviceNamesNexus(text, p.hostnames)
				may = mayBearer && (serviceNamesNexus(val, p.hostnames) || serviceNamesNexus(text, p.hostnames) || p.ours(hostOf(val)) || p.ours(hostOf(text)))
			}
			switch {
			case must && !replaced:
				t.Fatalf("rewriteChallenge(%q) = %q: %s=%s, want %s", u, out, b.name, b.raw, quoted)
			case !kept && !(may && replaced):
				t.Fatalf("rewriteChallenge(%q) = %q: %s=%s, was %s", u, out, b.name, b.raw, a.raw)
			}
		}
	}
}

// The oracle's own parser, held to RFC 9110 on the shapes that matter:
// if it parsed less than it should, the strict checks would never run.
func TestOracleParsesChallenges(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int // challenges; -1: no RFC 9110 list
	}{
		{`Bearer realm="http://nexus:8081/repository/team-a/v2/token",service="x",scope="a,b"`, 1},
		{`Basic realm="Sonatype Nexus Repository Manager", Bearer realm="x"`, 2},
		{`Basic realm="a",Bearer realm = "b" , service=c`, 2},
		{`Bearer realm=x,,service=y, Negotiate abc==, Bearer`, 3},
		{`Bearer realm=`, 1}, // token68
		{`Bearer error_description="a \"q\" \\ b"`, 1},
		{``, 0},
		{`Bearer,realm="x"`, -1},
		{`Bearer realm="x`, -1},
		{`Bearer realm=a"b`, -1},
		{"Bearer\trealm=x", -1},
		{`Bearer realm="a` + "\x01" + `"`, -1},
	} {
		got, ok := parseChallenges(c.in)
		if n := len(got); !ok && c.want != -1 || ok && n != c.want {
			t.Errorf("parseChallenges(%q) = %d challenges %v, want %d", c.in, n, ok, c.want)
		}
	}
	ps, _ := parseChallenges(`Basic realm="a",Bearer realm = "b" , service=c`)
	if len(ps) != 2 || len(ps[1].params) != 2 || ps[1].params[0] != (authParam{"realm", `"b"`}) || ps[1].params[1] != (authParam{"service", "c"}) {
		t.Errorf("parsed %+v", ps)
	}
}
