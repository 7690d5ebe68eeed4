package l7

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/route"
)

const (
	pubBase  = "https://team-a.example.com:5001"
	upload   = "/v2/app/blobs/uploads/0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f"
	rawQuery = "?_state=abc%2Bdef%2F%3D%3D&digest=sha256%3A4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
	s3URL    = "https://nexus-blobs.s3.eu-west-1.amazonaws.com/content/vol-01/chap-02/4f53.bytes?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20250101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=deadbeef"
)

// testURLs is what modifyResponse builds for a client that connected to
// team-a.example.com:5001 (Host as sent), in front of http://nexus:8081<ctx>.
func testURLs(ctx string) *publicURLs {
	return &publicURLs{
		base:      pubBase,
		ctxPath:   ctx,
		target:    route.Target{Pull: "team-a", Push: "team-a-hosted"},
		hostnames: []string{"team-a.example.com", "nexus"},
		nodes:     []string{"nexus:8081"},
	}
}

func TestRewrite(t *testing.T) {
	for _, tc := range []struct {
		ctx, in, want string // want "" means unchanged
	}{
		// shape 1: relative without prefix
		{"", upload + rawQuery, pubBase + upload + rawQuery},
		{"", "/v2/app/manifests/" + testDigest, pubBase + "/v2/app/manifests/" + testDigest},
		{"", "/v2/", pubBase + "/v2/"},
		{"", "/v2/_catalog?n=2&last=b", pubBase + "/v2/_catalog?n=2&last=b"},
		{"", "/v2/app/tags/list#frag", pubBase + "/v2/app/tags/list#frag"},
		{"/nexus", upload + rawQuery, pubBase + upload + rawQuery},
		// shape 2: relative with prefix, own repositories
		{"", "/repository/team-a-hosted" + upload + rawQuery, pubBase + upload + rawQuery},
		{"", "/repository/team-a/v2/app/tags/list?n=10&last=1.0", pubBase + "/v2/app/tags/list?n=10&last=1.0"},
		{"", "/repository/team-a/v2/token", pubBase + "/v2/token"},
		{"/nexus", "/nexus/repository/team-a-hosted" + upload + rawQuery, pubBase + upload + rawQuery},
		// shape 3: absolute, on the upstream's host or the public host
		{"", "http://nexus:8081/repository/team-a-hosted" + upload + rawQuery, pubBase + upload + rawQuery},
		{"", "http://nexus/repository/team-a-hosted" + upload, pubBase + upload},
		{"", "https://team-a.example.com:5001/repository/team-a-hosted" + upload + rawQuery, pubBase + upload + rawQuery},
		{"", "https://team-a.example.com/repository/team-a/v2/token", pubBase + "/v2/token"},
		{"", "http://team-a.example.com:443/repository/team-a/v2/token", pubBase + "/v2/token"},
		{"", "HTTP://NEXUS:8081/repository/team-a/v2/_catalog?n=10", pubBase + "/v2/_catalog?n=10"},
		{"", "HTTPS://TEAM-A.EXAMPLE.COM:5001/repository/team-a/v2/token", pubBase + "/v2/token"},
		{"", "https://Team-A.Example.COM.:5001/v2/app/manifests/1", pubBase + "/v2/app/manifests/1"},
		{"", "http://user:pw@nexus:8081/repository/team-a/v2/x", pubBase + "/v2/x"},
		{"/nexus", "http://nexus:8081/nexus/repository/team-a-hosted" + upload + rawQuery, pubBase + upload + rawQuery},
		// X-Forwarded-Host with a port: Nexus doubles it; repaired, not passed on
		{"", "https://team-a.example.com:5001:5001/repository/team-a-hosted" + upload + rawQuery, pubBase + upload + rawQuery},
		{"/nexus", "https://team-a.example.com:5001:5001/nexus/repository/team-a/v2/token", pubBase + "/v2/token"},
		// No X-Forwarded-Proto reached an older Nexus: it says "null"
		{"", "null://team-a.example.com:5001/repository/team-a/v2/token", pubBase + "/v2/token"},
		{"/nexus", "NULL://nexus:8081/nexus/repository/team-a-hosted" + upload + rawQuery, pubBase + upload + rawQuery},
		// Another host that names the route's own repository (a Base URL
		// naming another host, a connector port) is the route's too.
		{"", "https://evil.example.com/v2/app", pubBase + "/v2/app"},
		{"", "null://evil.example.com/v2/app", pubBase + "/v2/app"},
		{"", "https://evil.example.com/repository/team-a/v2/app", pubBase + "/v2/app"},
		{"", "http://nexus:8081@evil.example.com/repository/team-a/v2/x", pubBase + "/v2/x"},
		{"", "http://nexus.evil.example.com/repository/team-a/v2/x", pubBase + "/v2/x"},
		{"", "https://cdn.team-a.example.com/v2/app/blobs/" + testDigest, pubBase + "/v2/app/blobs/" + testDigest},
		{"", "http://old-nexus/repository/team-a/v2/x", pubBase + "/v2/x"},
		// ... under a front's path that is not the context path.
		{"/nexus", "https://repo.corp.example/repository/team-a/v2/x", pubBase + "/v2/x"},
		{"", "https://repo.corp.example/nexus/repository/team-a/v2/x?y", pubBase + "/v2/x?y"},
		{"", "https://repo.corp.example/nexus/repository/team-b/v2/x", "-"},
		{"", "http://[::1]:8081/v2/", pubBase + "/v2/"},
		{"", "//nexus:8081/v2/app", pubBase + "/v2/app"},
		// Nexus's own hosts, outside the route: to the public name, where
		// nexmux refuses it, never straight to Nexus.
		{"", "http://nexus:8081/repository/team-b/v2/x", pubBase + "/repository/team-b/v2/x"},
		{"", "//nexus:8081/service/rest/v1/status", pubBase + "/service/rest/v1/status"},
		{"", "http://nexus:8081/", pubBase + "/"},
		{"", "http://nexus:8081", pubBase + "/"},
		{"", "http://nexus:8081?x=/v2/", pubBase + "/?x=/v2/"},
		{"/nexus", "http://nexus:8081/repository/team-a/v2/x", pubBase + "/repository/team-a/v2/x"},
		// left exactly as they are: relative references (they resolve onto
		// the public name), nothing to rewrite
		{"", "/repository/team-b/v2/app/blobs/uploads/x", ""},
		{"", "/repository/team-a/service/rest/v1/status", ""},
		{"", "/repository/team-a/", ""},
		{"", "/service/rest/v1/status", ""},
		{"", "", ""},
		{"", "relative/v2/x", ""},
		{"", "v2/x", ""},
		{"", "/v2x", ""},
		{"/nexus", "/repository/team-a/v2/x", ""},
		{"/nexus", "/nexus/repository/team-b/v2/x", ""},
		// left out: another host, another scheme
		{"", s3URL, "-"},
		{"", "https://evil.example.com/upload/x", "-"},
		{"", "//evil.example.com/x", "-"},
		{"", "http://", "-"},
		{"", "ftp://nexus/v2/", "-"},
		{"", "https:evil.example.com/v2/", "-"},
	} {
		want, wantOK := tc.want, tc.want != "-"
		switch want {
		case "":
			want = tc.in
		case "-":
			want = ""
		}
		if got, ok := testURLs(tc.ctx).rewrite(tc.in, false); got != want && wantOK || ok != wantOK {
			t.Errorf("ctx %q: rewrite(%q)\n got %q %v\nwant %q %v", tc.ctx, tc.in, got, ok, want, wantOK)
		}
	}
}

func TestRewriteWithoutHost(t *testing.T) {
	p := testURLs("")
	p.base = "" // HTTP/1.0 client without Host: results stay relative
	// As a blob read's redirect, which keeps the S3 URL.
	for in, want := range map[string]string{
		"/repository/team-a-hosted" + upload + rawQuery: upload + rawQuery,
		"http://nexus:8081/repository/team-a/v2/token":  "/v2/token",
		upload:                    upload,
		s3URL:                     s3URL,
		"/repository/team-b/v2/x": "/repository/team-b/v2/x",
		"https://team-a.example.com:5001:5001/repository/team-a/v2/x?y": "/v2/x?y",
	} {
		if got, ok := p.rewrite(in, true); got != want || !ok {
			t.Errorf("rewrite(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

// A 3xx answer to a blob read may send the client to a blob store (S3, or
// one beside Nexus on its host); on Nexus's own paths it is Nexus
// redirecting to itself, and goes to the public name.
func TestRewriteBlobRedirect(t *testing.T) {
	const blob = "/v2/app/blobs/" + testDigest
	for in, want := range map[string]string{
		s3URL:                                        s3URL,
		"http://nexus:9000/nexus-blobs/x?sig=1":      "http://nexus:9000/nexus-blobs/x?sig=1",
		"https://cdn.example.com" + blob:             "https://cdn.example.com" + blob,
		"ftp://blobs.example.com/x":                  "ftp://blobs.example.com/x",
		"http://nexus:8081/repository/team-a" + blob: pubBase + blob,
		"http://nexus:8081/repository/team-b" + blob: pubBase + "/repository/team-b" + blob,
		"//nexus:8081/service/rest/v1/status":        pubBase + "/service/rest/v1/status",
		"/repository/team-a" + blob:                  pubBase + blob,
		"/repository/team-b" + blob:                  "/repository/team-b" + blob,
		// On a node's own port it is Nexus, whatever the path; without a
		// port, only a scheme's default port can tell a store apart.
		"http://nexus:8081/":                 pubBase + "/",
		"https://NEXUS:8081/static/x":        pubBase + "/static/x",
		"http://user@nexus:8081/x?y#z":       pubBase + "/x?y#z",
		"http://nexus:8081:8081/x":           pubBase + "/x",
		"null://nexus/x":                     pubBase + "/x",
		"//nexus/x":                          pubBase + "/x",
		"http://nexus/nexus-blobs/x":         "http://nexus/nexus-blobs/x",
		"http://nexus:80/nexus-blobs/x":      "http://nexus:80/nexus-blobs/x",
		"https://team-a.example.com:9000/x":  "https://team-a.example.com:9000/x",
		"https://team-a.example.com:8081/x":  "https://team-a.example.com:8081/x",
		"http://nexus.example.com:8081/x?s=": "http://nexus.example.com:8081/x?s=",
	} {
		if got, ok := testURLs("").rewrite(in, true); got != want || !ok {
			t.Errorf("rewrite(%q, redirect) = %q %v, want %q", in, got, ok, want)
		}
	}
	v6 := testURLs("")
	v6.hostnames, v6.nodes = []string{"team-a.example.com", "[fd00::1]"}, []string{nodeKey("[FD00::1]:8081")}
	for in, want := range map[string]string{
		"http://[fd00::1]:8081/x":  pubBase + "/x",
		"http://[fd00::1]:9000/x":  "http://[fd00::1]:9000/x",
		"http://[fd00::1]/x":       "http://[fd00::1]/x",
		"https://[fd00::1]:8081/x": pubBase + "/x",
	} {
		if got, ok := v6.rewrite(in, true); got != want || !ok {
			t.Errorf("IPv6 node: rewrite(%q, redirect) = %q %v, want %q", in, got, ok, want)
		}
	}
}

func TestRewriteLink(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`</v2/_catalog?last=b&n=2>; rel="next"`, `<` + pubBase + `/v2/_catalog?last=b&n=2>; rel="next"`},
		{`</repository/team-a/v2/app/tags/list?n=2&last=1.0>; rel="next"`, `<` + pubBase + `/v2/app/tags/list?n=2&last=1.0>; rel="next"`},
		{
			`<http://nexus:8081/repository/team-a/v2/app/tags/list?n=2&last=1.1>; rel="next", </repository/team-a/v2/app/tags/list?n=2>; rel="first", <https://s3.example.com/x?a=1>; rel="alternate"`,
			`<` + pubBase + `/v2/app/tags/list?n=2&last=1.1>; rel="next", <` + pubBase + `/v2/app/tags/list?n=2>; rel="first"`,
		},
		{`<https://team-a.example.com:5001:5001/repository/team-a/v2/_catalog?n=1&last=a%2Fb>;rel=next`, `<` + pubBase + `/v2/_catalog?n=1&last=a%2Fb>;rel=next`},
		{`</repository/team-b/v2/_catalog?n=1>; rel="next"`, ""},
		// Another host's link-values are left out, the others kept.
		{`<https://s3.example.com/x>; rel="next"`, "-"},
		{`<https://s3.example.com/x>; rel="prev", </v2/_catalog?n=1&last=a>; title="a, b>"`, `<` + pubBase + `/v2/_catalog?n=1&last=a>; title="a, b>"`},
		{`</v2/_catalog?n=1&last=a,b>; rel="next",<//evil.example.com/x>`, `<` + pubBase + `/v2/_catalog?n=1&last=a,b>; rel="next"`},
		// A '<' inside the URL: a client reading from the last '<' would
		// go to evil.example.com.
		{`</v2/_catalog?n=1&last=<https://evil.example.com/x>; rel="next"`, "-"},
		{`rel="next"`, ""},
		{`<unterminated; rel="next"`, ""},
		{`<>; rel="next"`, ""},
		{`<`, ""},
		{`>`, ""},
		{``, ""},
	} {
		want, wantOK := tc.want, tc.want != "-"
		switch want {
		case "":
			want = tc.in
		case "-":
			want = ""
		}
		if got, ok := testURLs("").rewriteLink(tc.in); got != want || ok != wantOK {
			t.Errorf("rewriteLink(%q)\n got %q %v\nwant %q %v", tc.in, got, ok, want, wantOK)
		}
	}
}

func TestRewriteChallenge(t *testing.T) {
	const nexusRealm = "http://nexus:8081/repository/team-a/v2/token"
	const token = pubBase + "/v2/token"
	for _, tc := range []struct{ in, want string }{
		{
			`Bearer realm="` + nexusRealm + `",service="` + nexusRealm + `"`,
			`Bearer realm="` + token + `",service="` + token + `"`,
		},
		{
			`Bearer realm="https://team-a.example.com:5001/repository/team-a/v2/token",service="https://team-a.example.com:5001/repository/team-a/v2/token",scope="repository:app:pull,push"`,
			`Bearer realm="` + token + `",service="` + token + `",scope="repository:app:pull,push"`,
		},
		{`bearer realm="` + nexusRealm + `"`, `bearer realm="` + token + `"`},
		{`BEARER REALM="` + nexusRealm + `"`, `BEARER REALM="` + token + `"`},
		{`Bearer Realm="` + nexusRealm + `",Service="x"`, `Bearer Realm="` + token + `",Service="x"`},
		{`Bearer service="x",realm="` + nexusRealm + `",scope="s"`, `Bearer service="x",realm="` + token + `",scope="s"`},
		{`Bearer realm="https://team-a.example.com:5001:5001/repository/team-a/v2/token",service="s"`, `Bearer realm="` + token + `",service="s"`},
		{`Bearer realm="/repository/team-a/v2/token"`, `Bearer realm="` + token + `"`},
		{`Bearer realm = "` + nexusRealm + `" , service = "/repository/team-a/v2/token"`, `Bearer realm = "` + token + `" , service = "` + token + `"`},
		// non-ASCII before the realm must not shift where it is found
		{`Bearer service="İİİİ",realm="` + nexusRealm + `"`, `Bearer service="İİİİ",realm="` + token + `"`},
		{"Bearer service=\"\xff\xff\xff\",realm=\"" + nexusRealm + `"`, "Bearer service=\"\xff\xff\xff\",realm=\"" + token + `"`},
		{`Bearer service="ȺȺȺȺȺȺȺȺȺȺ",realm="/v2/token"`, `Bearer service="ȺȺȺȺȺȺȺȺȺȺ",realm="` + token + `"`},
		{"Bearer " + strings.Repeat("Ⱥ", 20) + `,realm="/v2/token"`, "Bearer " + strings.Repeat("Ⱥ", 20) + `,realm="` + token + `"`},
		// Wherever Nexus's realm points, the client's credentials go to
		// the route's own token endpoint: another repository, another
		// host, a repeated realm (clients keep the last), an unquoted or
		// unterminated one.
		{`Bearer realm="http://nexus:8081/repository/team-b/v2/token"`, `Bearer realm="` + token + `"`},
		{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`, `Bearer realm="` + token + `",service="registry.docker.io"`},
		{`Bearer realm="` + nexusRealm + `",realm="https://evil.example.com/t"`, `Bearer realm="` + token + `",realm="` + token + `"`},
		{`Bearer realm="` + nexusRealm, `Bearer realm="` + token + `"`},
		{`Bearer realm=` + nexusRealm, `Bearer realm="` + token + `"`},
		{`Bearer realm=` + nexusRealm + `,service=x`, `Bearer realm="` + token + `",service=x`},
		{`Basic realm="Sonatype Nexus Repository Manager", Bearer realm="https://evil.example.com/t"`, `Basic realm="` + token + `", Bearer realm="` + token + `"`},
		// Challenges joined by a comma without a space (RFC 9110 allows it).
		{`Basic realm="Sonatype Nexus Repository Manager",Bearer realm="` + nexusRealm + `"`, `Basic realm="` + token + `",Bearer realm="` + token + `"`},
		// A scheme a comma follows has no auth-params to a strict parser
		// (docker's), but a realm to a lenient one: the route's too.
		{`Bearer,realm="https://evil.example.com/t"`, `Bearer,realm="` + token + `"`},
		{`Basic realm="x", Bearer, realm="https://evil.example.com/t"`, `Basic realm="` + token + `", Bearer, realm="` + token + `"`},
		// A parameter's text inside another's quoted value is no parameter.
		{`Bearer service="a, realm=https://evil.example.com",realm="x"`, `Bearer service="a, realm=https://evil.example.com",realm="` + token + `"`},
		// untouched
		{`Basic realm="Sonatype Nexus Repository Manager"`, ""},
		{`BASIC realm="Sonatype Nexus Repository Manager"`, ""},
		{`Basic realm="` + nexusRealm + `"`, ""},
		{`Bearers realm="` + nexusRealm + `"`, ""},
		{`Bearer error="invalid_token"`, ""},
		{`Bearer`, ""},
		{`Bearer `, ""},
		{`Negotiate abc`, ""},
		{``, ""},
	} {
		want := tc.want
		if want == "" {
			want = tc.in
		}
		if got := testURLs("").rewriteChallenge(tc.in); got != want {
			t.Errorf("rewriteChallenge(%q)\n got %q\nwant %q", tc.in, got, want)
		}
	}
}

func TestRewriteHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("Location", "http://nexus:8081/repository/team-a-hosted"+upload+rawQuery)
	h.Add("Link", `</repository/team-a/v2/_catalog?n=1&last=a>; rel="next"`)
	h.Add("Link", `<https://elsewhere.example.com/x>; rel="help"`)
	h.Add("WWW-Authenticate", `Bearer realm="http://nexus:8081/repository/team-a/v2/token",service="svc"`)
	h.Add("WWW-Authenticate", `Basic realm="Sonatype Nexus Repository Manager"`)
	h.Set("Docker-Upload-UUID", "0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f")
	h.Set("Range", "0-1023")
	h.Set("Content-Location", "/repository/team-a/v2/x")
	testURLs("").rewriteHeaders(h, false)
	want := http.Header{
		"Location":           {pubBase + upload + rawQuery},
		"Link":               {`<` + pubBase + `/v2/_catalog?n=1&last=a>; rel="next"`},
		"Www-Authenticate":   {`Bearer realm="` + pubBase + `/v2/token",service="svc"`, `Basic realm="Sonatype Nexus Repository Manager"`},
		"Docker-Upload-Uuid": {"0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f"},
		"Range":              {"0-1023"},
		"Content-Location":   {pubBase + "/v2/x"},
	}
	for k, v := range want {
		if !slices.Equal(h[k], v) {
			t.Errorf("%s = %q, want %q", k, h[k], v)
		}
	}
	if len(h) != len(want) {
		t.Errorf("headers %v, want %v", h, want)
	}
	// No headers: nothing created.
	empty := http.Header{}
	testURLs("").rewriteHeaders(empty, false)
	if len(empty) != 0 {
		t.Errorf("rewriteHeaders added %v", empty)
	}
	// A Location on another host goes, header and all.
	foreign := http.Header{"Location": {s3URL}, "Link": {`<` + s3URL + `>; rel="next"`}}
	testURLs("").rewriteHeaders(foreign, false)
	if len(foreign) != 0 {
		t.Errorf("rewriteHeaders left %v", foreign)
	}
}

// A Link value whose URL has no '<' is no RFC 8288 link-value, but
// distribution's registry client reads the text before its first ';' as
// the next page's URL all the same, and goes there: such a URL is held to
// what a bracketed one is (the public name, or left out).
func TestRewriteHeadersBareLinkURLs(t *testing.T) {
	for _, c := range []struct{ in, want string }{ // want "-": no Link left
		{`https://evil.example.com/x/tags/list?n=1&last=a; rel="next"`, "-"},
		{`//evil.example.com/x/tags/list?n=1&last=a;rel=next`, "-"},
		// On another host, the route's path maps onto the public name.
		{`https://evil.example.com/v2/_catalog?n=1&last=a; rel="next"`, pubBase + `/v2/_catalog?n=1&last=a; rel="next"`},
		{`http://nexus:8081/repository/team-a/v2/app/tags/list?n=1&last=a; rel="next"`, pubBase + `/v2/app/tags/list?n=1&last=a; rel="next"`},
		{`http://nexus:8081/repository/team-b/v2/app/tags/list?n=1>; rel="next"`, pubBase + `/repository/team-b/v2/app/tags/list?n=1>; rel="next"`},
		{`</v2/_catalog?n=1>; rel="prev", https://evil.example.com/x; rel="next"`, `<` + pubBase + `/v2/_catalog?n=1>; rel="prev"`},
		{`https://evil.example.com/x; rel="prev", </v2/_catalog?n=1>; rel="next"`, `<` + pubBase + `/v2/_catalog?n=1>; rel="next"`},
		{`<https://s3.example.com/x>; rel="prev", https://evil.example.com/x; rel="next"`, "-"},
		// A '<' never closed: that client trims it and reads the URL.
		{`<https://evil.example.com/x/tags/list?n=1; rel="next"`, "-"},
		{`<unterminated; rel="next"`, `<unterminated; rel="next"`},
		// No URL: as it came.
		{`rel="next"`, `rel="next"`},
		{`>; rel="next"`, `>; rel="next"`},
	} {
		h := http.Header{"Link": {c.in}}
		testURLs("").rewriteHeaders(h, false)
		got, ok := h["Link"]
		if c.want == "-" {
			if ok {
				t.Errorf("Link %q: client got %q, want it left out", c.in, got)
			}
			continue
		}
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("Link %q: client got %q, want %q", c.in, got, c.want)
		}
	}
}

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"nexus:8081":                   "nexus",
		"NEXUS":                        "nexus",
		"team-a.example.com:5001":      "team-a.example.com",
		"team-a.example.com:5001:5001": "team-a.example.com",
		"team-a.example.com.:443":      "team-a.example.com",
		"user:pw@nexus:8081":           "nexus",
		"nexus:8081@evil.com":          "evil.com",
		// The host follows the last '@', as url.Parse and clients read it.
		"a@evil.com@nexus:8081": "nexus",
		"[::1]:8081":            "[::1]",
		"[2001:DB8::1]":         "[2001:db8::1]",
		"[::1":                  "[",
		"":                      "",
	} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkRewrite(b *testing.B) {
	for _, c := range []struct{ name, in string }{
		{"relative", upload + rawQuery},
		{"prefixed", "/repository/team-a-hosted" + upload + rawQuery},
		{"absolute", "http://nexus:8081/repository/team-a-hosted" + upload + rawQuery},
		{"doubled-port", "https://team-a.example.com:5001:5001/repository/team-a-hosted" + upload + rawQuery},
		{"foreign", s3URL},
	} {
		p := testURLs("")
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = p.rewrite(c.in, false)
			}
		})
	}
	b.Run("link", func(b *testing.B) {
		p := testURLs("")
		v := `<http://nexus:8081/repository/team-a/v2/app/tags/list?n=2&last=1.1>; rel="next", </repository/team-a/v2/app/tags/list?n=2>; rel="first"`
		b.ReportAllocs()
		for b.Loop() {
			_, _ = p.rewriteLink(v)
		}
	})
	b.Run("challenge", func(b *testing.B) {
		p := testURLs("")
		v := `Bearer realm="http://nexus:8081/repository/team-a/v2/token",service="http://nexus:8081/repository/team-a/v2/token",scope="repository:app:pull"`
		b.ReportAllocs()
		for b.Loop() {
			_ = p.rewriteChallenge(v)
		}
	})
	b.Run("headers", func(b *testing.B) {
		p := testURLs("")
		b.ReportAllocs()
		for b.Loop() {
			h := http.Header{"Location": {"/repository/team-a-hosted" + upload + rawQuery}}
			p.rewriteHeaders(h, false)
		}
	})
}

// Nexus before 3.77, or one whose Base URL names its own address, hands
// back URLs on the node's host: through the Proxy they reach the client
// on the public name, never the internal address.
func TestNodeAddressInURLsRewritten(t *testing.T) {
	var node *haNode
	node = startNode(t, func(w http.ResponseWriter, r *http.Request) {
		own := "http://" + node.addr + "/repository/team-a"
		switch {
		case r.Method == http.MethodPost:
			w.Header().Set("Location", own+"/v2/app/blobs/uploads/u1?_state=x")
			w.WriteHeader(http.StatusAccepted)
		case strings.HasSuffix(r.URL.Path, "/tags/list"):
			w.Header().Set("Link", "<"+own+`/v2/app/tags/list?n=1&last=a>; rel="next"`)
		case strings.HasSuffix(r.URL.Path, "/v2/"):
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+own+`/v2/token",service="nexus"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	addr, _ := haProxy(t, io.Discard, 0, node)
	const public = "http://team-a.example.com"
	for _, c := range []struct{ method, path, header, wantPrefix string }{
		{http.MethodPost, "/v2/app/blobs/uploads/", "Location", public + "/v2/app/blobs/uploads/u1?_state=x"},
		{http.MethodGet, "/v2/app/tags/list?n=1", "Link", "<" + public + `/v2/app/tags/list?n=1&last=a>; rel="next"`},
		{http.MethodGet, "/v2/", "Www-Authenticate", `Bearer realm="` + public + `/v2/token",service="nexus"`},
	} {
		resp, _ := send(t, addr, c.method, c.path, nil)
		if got := resp.Header.Get(c.header); !strings.HasPrefix(got, c.wantPrefix) || strings.Contains(got, node.addr) {
			t.Errorf("%s %s: %s %q, want %q", c.method, c.path, c.header, got, c.wantPrefix)
		}
	}
}

// A '"' inside a param's token value opens a quoted string to a list
// splitter (Python's parse_http_list) and closes at the next one: a realm
// after that pair is a realm to such a client and to distribution's parser
// at that element, so it names the route's token endpoint too (FuzzRewrite
// found it: the realm was kept, as we read it inside quotes).
func TestChallengeQuoteInsideATokenValue(t *testing.T) {
	const token = pubBase + "/v2/token"
	for _, c := range []struct{ in, want string }{
		{`x=0" ",Bearer realm="https://evil.example.com/t"`, `x=0" ",Bearer realm="` + token + `"`},
		{`Bearer x=0" ", realm="https://evil.example.com/t"`, `Bearer x=0" ", realm="` + token + `"`},
		{`Bearer realm=a"b", service=x`, `Bearer realm="` + token + `", service=x`},
		// Unclosed: the rest is the value's, to them as to us.
		{`Bearer realm=evil", service=x`, `Bearer realm="` + token + `"`},
	} {
		if got := testURLs("").rewriteChallenge(c.in); got != c.want {
			t.Errorf("rewriteChallenge(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}
