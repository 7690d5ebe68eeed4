package l7

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nexmux/nexmux/route"
)

// lenientUnescape decodes every well-formed %XX and keeps everything else,
// the way the most forgiving servers do.
func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// hostileForm reports what is wrong with one decoded form of a path, or "".
func hostileForm(p string) string {
	if strings.ContainsAny(p, "\\\x00") {
		return "backslash or NUL"
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return "control byte"
		}
	}
	if !utf8.ValidString(p) {
		return "invalid UTF-8"
	}
	if strings.Contains(strings.ToLower(p), "%2f") {
		return "encoded slash"
	}
	for seg := range strings.SplitSeq(p, "/") {
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		if seg == "." || seg == ".." {
			return "dot segment"
		}
	}
	return ""
}

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{
		"/v2/", "/v2/app/blobs/sha256%3A4f53", "/v2/org%2Fapp/manifests/1", "/v2/x/blobs/uploads%2fabc",
		"/v2/%2e%2e/x", "/v2/%252e%252e/x", "/v2/..;/x", "/v2/%c0%ae%c0%ae/x", "/v2/%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		why, ok := checkPath(raw)
		why2, ok2 := checkPath(raw)
		if ok != ok2 || why != why2 {
			t.Fatalf("checkPath(%q) not deterministic: %v %q / %v %q", raw, ok, why, ok2, why2)
		}
		if ok != (why == "") {
			t.Fatalf("checkPath(%q) = %v with reason %q", raw, ok, why)
		}
		if !ok {
			return
		}
		if raw == "" || raw[0] != '/' {
			t.Fatalf("checkPath(%q) accepted a non-origin-form path", raw)
		}
		// Every form any decoder in the chain may see: strict and lenient,
		// as many rounds as it takes to stop changing.
		for _, decode := range []func(string) (string, error){
			url.PathUnescape,
			func(s string) (string, error) { return lenientUnescape(s), nil },
		} {
			p := raw
			for round := 0; round < 8; round++ {
				if w := hostileForm(p); w != "" {
					t.Fatalf("checkPath(%q) accepted; decoding round %d gives %q: %s", raw, round, p, w)
				}
				next, err := decode(p)
				if err != nil || next == p {
					break
				}
				p = next
			}
		}
	})
}

// FuzzRewrite: whatever Nexus (or a broken proxy in front of it) puts into
// Location, Link or WWW-Authenticate, the rewrite never panics, and it
// either leaves the value alone or points it at the client's public base.
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		upload + rawQuery,
		"/repository/team-a-hosted" + upload + rawQuery,
		"http://nexus:8081/repository/team-a-hosted" + upload,
		"https://team-a.example.com:5001:5001/repository/team-a/v2/token",
		s3URL,
		"/repository/team-b/v2/x",
		`Bearer realm="http://nexus:8081/repository/team-a/v2/token",service="x"`,
		`</v2/_catalog?n=1&last=a>; rel="next", <http://nexus/x>; rel="prev"`,
		// Realms of the Nexus versions and setups in nexus-docker.md.
		`Bearer realm="http://nexus:8081/repository/team-a/v2/token",service="http://nexus:8081/repository/team-a/v2/token"`,
		`Bearer realm="http://nexus:8081/nexus/repository/team-a/v2/token",service="http://nexus:8081/nexus/repository/team-a/v2/token"`,
		`Bearer realm="http://nexus:8082/v2/token",service="http://nexus:8082/v2/token"`,
		`Bearer realm="https://team-a.example.com:5001/repository/team-a/v2/token",service="https://team-a.example.com:5001/repository/team-a/v2/token",scope="repository:app:pull,push"`,
		`Bearer realm="null://team-a.example.com:5001/repository/team-a/v2/token",service="null://team-a.example.com:5001/repository/team-a/v2/token"`,
		`Bearer realm="http://team-a.example.com:443/repository/team-a/v2/token",service="http://team-a.example.com:443/repository/team-a/v2/token"`,
		`Bearer realm="https://team-a.example.com:5001:5001/repository/team-a/v2/token",service="https://team-a.example.com:5001:5001/repository/team-a/v2/token"`,
		`Bearer realm="https://team-a.example.com,lb.example.com/repository/team-a/v2/token",service="https://team-a.example.com,lb.example.com/repository/team-a/v2/token"`,
		`Bearer realm="https://team-a.example.com:5001/repository/team-a/repository/team-a/v2/token",service="x"`,
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull",error="insufficient_scope"`,
		`BASIC realm="Sonatype Nexus Repository Manager"`,
		`Basic realm="Sonatype Nexus Repository Manager", Bearer realm="http://nexus:8081/repository/team-a/v2/token",service="nexus:8081"`,
		`Bearer realm=http://127.0.0.1:8081/repository/team-a/v2/token,service=127.0.0.1:8081`,
		`Bearer realm="/repository/team-a/v2/token", error="invalid_token", error_description="a \"quoted\" word"`,
		`Bearer realm = "http://nexus:8081/repository/team-a/v2/token" , service = nexus:8081`,
	} {
		f.Add(s, "")
		f.Add(s, "/nexus")
	}
	f.Fuzz(func(t *testing.T, u, ctx string) {
		p := testURLs(ctx)
		p.target = route.Target{Pull: "team-a", Push: "team-a-hosted"}
		for _, redirect := range []bool{false, true} {
			out, ok := p.rewrite(u, redirect)
			if !ok {
				if redirect || out != "" {
					t.Fatalf("rewrite(%q, %v) = %q, false", u, redirect, out)
				}
				continue
			}
			if out == u {
				// Kept as it came: only a blob read's redirect may lead off
				// the public name; a value a client reads as absolute
				// ("https:", "//host", " //host") must already be on it.
				if n := clientForm(u); !redirect && !strings.HasPrefix(u, pubBase+"/") && (hasScheme(n) || strings.HasPrefix(n, "//")) {
					t.Fatalf("rewrite(%q, false) kept it as it came: it leads off the public name", u)
				}
				continue
			}
			if !strings.HasPrefix(out, pubBase+"/") {
				t.Fatalf("rewrite(%q, %v) = %q: neither unchanged nor under %s", u, redirect, out, pubBase)
			}
			// What we hand out is ours and stays as it is.
			if again, ok := p.rewrite(out, redirect); again != out || !ok {
				t.Fatalf("rewrite not idempotent: %q -> %q -> %q", u, out, again)
			}
			// The path and query after the repository prefix are kept byte
			// for byte.
			if !strings.HasSuffix(u, strings.TrimPrefix(out, pubBase+"/")) {
				t.Fatalf("rewrite(%q, %v) = %q changed the path or query", u, redirect, out)
			}
		}
		// The public port as the client sent it (5001), and none (443).
		checkChallenge(t, p, u, p.rewriteChallenge(u))
		noPort := *p
		noPort.base = "https://team-a.example.com"
		checkChallenge(t, &noPort, u, noPort.rewriteChallenge(u))
		// Every URL of a rewritten Link is under the public base or one
		// of the value's own.
		ln, ok := p.rewriteLink(u)
		if ok && ln != u {
			mapLinkURLs(ln, func(l string) string {
				if !strings.HasPrefix(l, pubBase+"/") && !strings.Contains(u, "<"+l+">") {
					t.Fatalf("rewriteLink(%q) = %q: %q is neither ours nor the value's", u, ln, l)
				}
				// One of the value's own is kept only where it leads nowhere
				// off the public name, as rewrite keeps a Location.
				if n := clientForm(l); !strings.HasPrefix(l, pubBase+"/") && (hasScheme(n) || strings.HasPrefix(n, "//")) {
					t.Fatalf("rewriteLink(%q) = %q kept %q: it leads off the public name", u, ln, l)
				}
				return l
			})
		}
		// A value without '<' has no URL to rewrite in a Link header.
		if !strings.Contains(u, "<") && ln != u {
			t.Fatalf("rewriteLink(%q) = %q", u, ln)
		}
	})
}

// FuzzDescribeParam: a query whose parameter name Go's own query decoding
// (or the plain bytes) reads as "describe" in any case is always refused.
func FuzzDescribeParam(f *testing.F) {
	for _, s := range []string{"describe", "n=1&%64escribe=json", "%u0064escribe", "a=b;describe", "x=%zz", "%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := describeParam(q)
		for _, param := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
			name, _, _ := strings.Cut(param, "=")
			dec, err := url.QueryUnescape(name)
			if (strings.EqualFold(name, "describe") || err == nil && strings.EqualFold(dec, "describe")) && !got {
				t.Fatalf("describeParam(%q) = false, but %q reads as describe", q, name)
			}
		}
	})
}
