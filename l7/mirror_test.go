package l7

import (
	"net/http"
	"testing"
)

func TestCutNS(t *testing.T) {
	for _, c := range []struct {
		in, ns, rest string
		ok           bool
	}{
		{"", "", "", true},
		{"n=2", "", "n=2", true},
		{"ns=docker.io", "docker.io", "", true},
		{"n=2&ns=ghcr.io&last=a%2Cb", "ghcr.io", "n=2&last=a%2Cb", true},
		{"ns=ghcr.io&ns=ghcr.io", "ghcr.io", "", true},
		{"ns=ghcr.io&ns=quay.io", "", "", false},
		{"ns=", "", "", false},
		{"dns=x&ns2=y", "", "dns=x&ns2=y", true},
		{"ns=registry.corp.test%3A5000", "registry.corp.test%3A5000", "", true},
	} {
		ns, rest, ok := cutNS(c.in)
		if ns != c.ns || rest != c.rest || ok != c.ok {
			t.Errorf("cutNS(%q) = %q %q %v, want %q %q %v", c.in, ns, rest, ok, c.ns, c.rest, c.ok)
		}
	}
}

func TestMirrorEndpoint(t *testing.T) {
	for sub, want := range map[string]bool{
		"/v2/library/alpine/manifests/3":         true,
		"/v2/a/b/c/blobs/sha256:abc":             true,
		"/v2/a/tags/list":                        true,
		"/v2/a/referrers/sha256:abc":             true,
		"/v2/a/blobs/uploads":                    false,
		"/v2/a/blobs/uploads/":                   false,
		"/v2/a/blobs/uploads/123":                false,
		"/v2/manifests/3":                        false,
		"/v2/tags/list":                          false,
		"/v2/a/manifests/":                       false,
		"/v2/_catalog":                           false,
		"/v2/a":                                  false,
		"/v2/blobs/manifests/1":                  true, // an image called "blobs"
		"/v2/a/blobs/uploads/manifests/sha256:1": true, // an image called "a/blobs/uploads"
	} {
		if got := mirrorEndpoint(sub); got != want {
			t.Errorf("mirrorEndpoint(%q) = %v, want %v", sub, got, want)
		}
	}
}

func TestMirrorFirstSegment(t *testing.T) {
	for seg, want := range map[string][2]bool{ // valid, registry host
		"library":                 {true, false},
		"ghcr.io":                 {true, true},
		"GHCR.IO":                 {true, true},
		"localhost":               {true, true},
		"LocalHost":               {true, true},
		"registry.corp.test:5000": {true, true},
		"localhost:5000":          {true, true},
		"my-ns_1":                 {true, false},
		"ghcr%2eio":               {false, false},
		"ghcr.io;x":               {false, true},
		"u@ghcr.io":               {false, true},
		"[::1]:5000":              {false, true},
		"":                        {false, false},
	} {
		if v, h := validFirstSegment(seg), isRegistryHost(seg); v != want[0] || (v && h != want[1]) {
			t.Errorf("%q: valid %v host %v, want %v", seg, v, h, want)
		}
	}
}

func TestMirrorPublicForm(t *testing.T) {
	const base = "https://mirror.example.com"
	for _, c := range []struct {
		mr       mirrorReq
		loc      string
		link     string
		wantLoc  string
		wantLink string
	}{
		{mirrorReq{prefix: "ghcr.io"}, base + "/v2/acme/app/blobs/sha256:1", `<` + base + `/v2/acme/app/tags/list?n=2&last=b>; rel="next"`,
			base + "/v2/ghcr.io/acme/app/blobs/sha256:1", `<` + base + `/v2/ghcr.io/acme/app/tags/list?n=2&last=b>; rel="next"`},
		{mirrorReq{ns: "registry.corp.test%3A5000"}, base + "/v2/x/blobs/sha256:1", `</v2/x/tags/list?n=2>; rel="next"`,
			base + "/v2/x/blobs/sha256:1?ns=registry.corp.test%3A5000", `</v2/x/tags/list?n=2>; rel="next"`},
		{mirrorReq{prefix: "quay.io", ns: "quay.io"}, base + "/v2/x/tags/list?n=1", "",
			base + "/v2/quay.io/x/tags/list?n=1&ns=quay.io", ""},
		// ns goes into the query, before a fragment.
		{mirrorReq{ns: "quay.io"}, base + "/v2/x/blobs/sha256:1#f", `<` + base + `/v2/x/tags/list?n=2&last=b#p>; rel="next"`,
			base + "/v2/x/blobs/sha256:1?ns=quay.io#f", `<` + base + `/v2/x/tags/list?n=2&last=b&ns=quay.io#p>; rel="next"`},
		{mirrorReq{prefix: "quay.io", ns: "quay.io"}, base + "/v2/x/tags/list#a?b", "",
			base + "/v2/quay.io/x/tags/list?ns=quay.io#a?b", ""},
		// Redirects elsewhere (S3) are untouched.
		{mirrorReq{prefix: "ghcr.io"}, "https://s3.example.net/v2/bucket/blob?sig=1", "",
			"https://s3.example.net/v2/bucket/blob?sig=1", ""},
		{mirrorReq{}, base + "/v2/x/blobs/sha256:1", "", base + "/v2/x/blobs/sha256:1", ""},
		{mirrorReq{repoPath: "/nexus/repository/quay-proxy"}, base + "/v2/x/blobs/sha256:1", `<` + base + `/v2/x/tags/list?n=2>; rel="next"`,
			base + "/nexus/repository/quay-proxy/v2/x/blobs/sha256:1", `<` + base + `/nexus/repository/quay-proxy/v2/x/tags/list?n=2>; rel="next"`},
		// Nexus's own form with containerd's ns keeps both.
		{mirrorReq{repoPath: "/repository/quay-proxy", ns: "quay.io"}, "", `<` + base + `/v2/x/tags/list?n=2>; rel="next"`,
			"", `<` + base + `/repository/quay-proxy/v2/x/tags/list?n=2&ns=quay.io>; rel="next"`},
	} {
		h := http.Header{}
		h.Set("Location", c.loc)
		if c.link != "" {
			h.Set("Link", c.link)
		}
		c.mr.publicForm(h, base)
		if h.Get("Location") != c.wantLoc || h.Get("Link") != c.wantLink {
			t.Errorf("%+v: Location %q Link %q, want %q %q", c.mr, h.Get("Location"), h.Get("Link"), c.wantLoc, c.wantLink)
		}
	}
}

func TestMirrorNameComponent(t *testing.T) {
	for s, want := range map[string]bool{
		"google.com": true, "john.smith": true, "a__b": true, "a---b": true, "a_b.c-d": true, "x": true,
		"": false, "...": false, ".a": false, "a.": false, "a..b": false, "a___b": false, "a._b": false,
		"Google.com": false, "host:5000": false, "-a": false, "a-": false,
	} {
		if got := nameComponent(s); got != want {
			t.Errorf("nameComponent(%q) = %v, want %v", s, got, want)
		}
	}
}
