package l7

import (
	"strings"
	"testing"

	"github.com/nexmux/nexmux/route"
)

const testDigest = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"

func TestCheckPath(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		ok      bool
		wantWhy string // substring of the reason when refused
	}{
		// not origin-form
		{"", false, "absolute path"},
		{"v2/", false, "absolute path"},
		{"*", false, "absolute path"},
		{"http://nexus:8081/service/rest/v1/status", false, "absolute path"},
		// plain dot segments
		{"/v2/../service/rest/v1/status", false, "dot segment"},
		{"/v2/..", false, "dot segment"},
		{"/..", false, "dot segment"},
		{"/v2/./app/manifests/latest", false, "dot segment"},
		{"/v2/app/.", false, "dot segment"},
		{"/repository/team-a/v2/../../team-b/v2/", false, "dot segment"},
		// encoded dots, any case, any mix
		{"/v2/%2e%2e/service/rest/v1/status", false, "dot segment"},
		{"/v2/%2E%2E/x", false, "dot segment"},
		{"/v2/%2E%2e%2Fservice%2Frest", false, "dot segment"},
		{"/v2/.%2e/x", false, "dot segment"},
		{"/v2/%2e./x", false, "dot segment"},
		{"/v2/%2e/x", false, "dot segment"},
		{"/v2/a%2f..%2fb", false, "dot segment"},
		{"/v2/app/..%2f", false, "dot segment"},
		{"/v2/%2f%2e%2e%2f", false, "dot segment"},
		// double, triple and quadruple encoding
		{"/v2/%252e%252e/x", false, "dot segment"},
		{"/v2/%252E%252E%252Fx", false, "dot segment"},
		{"/v2/%25252e%25252e/x", false, "dot segment"},
		{"/v2/%2525252e%2525252e/x", false, "too many times"},
		{"/v2/app%25252525", false, "too many times"},
		// Jetty / Tomcat path parameters
		{"/v2/..;/service/rest/v1/status", false, "dot segment"},
		{"/v2/..;jsessionid=1/x", false, "dot segment"},
		{"/v2/.;x/app", false, "dot segment"},
		{"/v2/%2e%2e;x/y", false, "dot segment"},
		{"/v2/..%3b/x", false, "dot segment"},
		{"/v2/.%3Bx/app", false, "dot segment"},
		// backslashes
		{`/v2/app\..\service`, false, "backslash"},
		{`/v2\`, false, "backslash"},
		{"/v2/app%5c..%5cservice", false, "backslash"},
		{"/v2/app%5C", false, "backslash"},
		{"/v2/app%255c", false, "backslash"},
		// NUL and other control bytes, raw and encoded
		{"/v2/app\x00", false, "control"},
		{"/v2/app%00.json", false, "control"},
		{"/v2/app%2500", false, "control"},
		{"/v2/app\x01/manifests/1", false, "control"},
		{"/v2/app\t", false, "control"},
		{"/v2/app%0d%0aSet-Cookie:%20x", false, "control"},
		{"/v2/app%0A", false, "control"},
		{"/v2/app%7f", false, "control"},
		{"/v2/app\x7f", false, "control"},
		{"/v2/app%1b[0m", false, "control"},
		{"/v2/app%1f", false, "control"},
		{"/v2/app\x1f", false, "control"},
		// overlong UTF-8 forms of '.', '/', '\' (CVE-2008-2938 style)
		{"/v2/%c0%ae%c0%ae/x", false, "UTF-8"},
		{"/v2/%c0%ae%c0%ae%c0%afservice", false, "UTF-8"},
		{"/v2/%e0%80%ae%e0%80%ae/x", false, "UTF-8"},
		{"/v2/%f0%80%80%ae", false, "UTF-8"},
		{"/v2/%c1%9c", false, "UTF-8"},
		{"/v2/%c0%2e", false, "UTF-8"},
		{"/v2/%ff/x", false, "UTF-8"},
		{"/v2/\xc0\xae\xc0\xae/x", false, "UTF-8"},
		{"/v2/%25c0%25ae%25c0%25ae/x", false, "UTF-8"},
		// malformed escapes
		{"/v2/%zz", false, "malformed"},
		{"/v2/app%", false, "malformed"},
		{"/v2/app%2", false, "malformed"},
		{"/v2/%2%65%2e/x", false, "malformed"},
		{"/v2/%%32%65%%32%65/x", false, "malformed"},
		{"/v2/%u002e%u002e/x", false, "malformed"},
		{"/v2/app%25zz", false, "malformed"},

		// what docker, containerd, crane, podman and npm-ish clients send
		{"/v2/", true, ""},
		{"/v2", true, ""},
		{"/v1/search", true, ""},
		{"/v2/token", true, ""},
		{"/v2/_catalog", true, ""},
		{"/v2/app/manifests/latest", true, ""},
		{"/v2/app/manifests/1.0.0-rc.1", true, ""},
		{"/v2/app/manifests/" + testDigest, true, ""},
		{"/v2/app/blobs/" + testDigest, true, ""},
		{"/v2/app/blobs/sha256%3A4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945", true, ""},
		{"/v2/app/blobs/sha256%3a4f53", true, ""},
		{"/v2/a/b/c/manifests/1.0", true, ""},
		{"/v2/org/team/app/blobs/uploads/", true, ""},
		{"/v2/app/blobs/uploads/0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f", true, ""},
		{"/v2/org%2Fapp/manifests/latest", false, "encoded slash"},
		{"/v2/org%2fapp/tags/list", false, "encoded slash"},
		{"/v2/org%252Fapp/tags/list", false, "encoded slash"},
		// The encoded slash is seen in the first round; a later round with
		// no "%2f" left must not forget it.
		{"/v2/org%2Fapp/blobs/sha256%253A4f53", false, "encoded slash"},
		{"/v2/x/blobs/uploads%2fabc", false, "encoded slash"},
		{"/v2/x/blobs%2F" + testDigest, false, "encoded slash"},
		{"/v2/a..b/manifests/1", true, ""},
		{"/v2/app/manifests/v1.0..rc", true, ""},
		{"/v2/.well-known/x", true, ""},
		{"/v2/..a/x", true, ""},
		{"/v2/a../x", true, ""},
		{"/v2/%2e%2ea/x", true, ""},
		{"/v2/app/manifests/1.0;x", false, "path parameter"},
		{"/v2/x/blobs/uploads;a", false, "path parameter"},
		{"/v2/x/blobs/uploads%3Ba", false, "path parameter"},
		{"/v2;x/", false, "path parameter"},
		{"/v2//app/manifests/1", true, ""},
		{"/v2/caf%C3%A9/manifests/1", true, ""},
		{"/v2/app%2Bplus/manifests/1", true, ""},
		{"/repository/team-a/v2/app/manifests/latest", true, ""},
		{"/nexus/repository/team-a/v2/", true, ""},
	} {
		why, ok := checkPath(tc.raw)
		if ok != tc.ok {
			t.Errorf("checkPath(%q) = %v (%q), want %v", tc.raw, ok, why, tc.ok)
			continue
		}
		if ok && why != "" {
			t.Errorf("checkPath(%q) accepted with reason %q", tc.raw, why)
		}
		if !ok && !strings.Contains(why, tc.wantWhy) {
			t.Errorf("checkPath(%q) reason %q does not mention %q", tc.raw, why, tc.wantWhy)
		}
	}
}

func TestMapRequest(t *testing.T) {
	split := route.Target{Pull: "team-a", Push: "team-a-hosted"}
	for _, tc := range []struct {
		ctx, method, path, query string
		repo, sub                string // repo "" means refused
	}{
		// what docker clients send
		{"", "GET", "/v2/", "", "team-a", "/v2/"},
		{"", "GET", "/v2", "", "team-a", "/v2"},
		{"", "GET", "/v1/search", "q=app", "team-a", "/v1/search"},
		{"", "GET", "/v1/", "", "team-a", "/v1/"},
		{"", "GET", "/v1", "", "team-a", "/v1"},
		{"", "GET", "/v2/app/manifests/latest", "", "team-a", "/v2/app/manifests/latest"},
		{"", "HEAD", "/v2/app/blobs/" + testDigest, "", "team-a-hosted", "/v2/app/blobs/" + testDigest},
		{"", "POST", "/v2/app/blobs/uploads/", "mount=" + testDigest + "&from=base", "team-a-hosted", "/v2/app/blobs/uploads/"},
		{"", "PUT", "/v2/app/manifests/1.0", "", "team-a-hosted", "/v2/app/manifests/1.0"},
		{"", "GET", "/v2/token", "scope=repository%3Aapp%3Apull%2Cpush", "team-a-hosted", "/v2/token"},
		// URLs Nexus handed out, followed verbatim: own repositories only
		{"", "GET", "/repository/team-a/v2/app/manifests/1", "", "team-a", "/v2/app/manifests/1"},
		{"", "PATCH", "/repository/team-a-hosted/v2/app/blobs/uploads/u1", "_state=x", "team-a-hosted", "/v2/app/blobs/uploads/u1"},
		{"", "GET", "/repository/team-a-hosted/v2/app/manifests/1", "", "team-a-hosted", "/v2/app/manifests/1"},
		{"", "GET", "/repository/team-a/v2", "", "team-a", "/v2"},
		{"", "GET", "/repository/team-a/v1/search", "q=x", "team-a", "/v1/search"},
		// Jetty decodes the path: the repository is picked, and every
		// other decision made, on the path as decoded (judged).
		{"", "HEAD", "/v2/app/blob%73/" + testDigest, "", "team-a-hosted", "/v2/app/blob%73/" + testDigest},
		{"", "GET", "/repository/team-a/v2/app/manifest%73/1", "x=1", "team-a", "/v2/app/manifest%73/1"},
		// refused: other repositories, Nexus's REST API and UI, odd prefixes
		{"", "GET", "/repository/team-b/v2/", "", "", ""},
		{"", "GET", "/repository/team-b/v2/app/manifests/1", "", "", ""},
		{"", "GET", "/repository/TEAM-A/v2/", "", "", ""},
		{"", "GET", "/repository/team-a%2f..%2fteam-b/v2/", "", "", ""},
		{"", "GET", "/repository//v2/", "", "", ""},
		{"", "GET", "/repository/team-a/service/rest/v1/status", "", "", ""},
		{"", "GET", "/repository/team-a/", "", "", ""},
		{"", "GET", "/repository/team-a", "", "", ""},
		{"", "GET", "/repository/team-a/v2x", "", "", ""},
		{"", "GET", "/repository/team-a/repository/team-a/v2/token", "", "", ""},
		{"", "GET", "/Repository/team-a/v2/", "", "", ""},
		{"", "GET", "/service/rest/v1/status", "", "", ""},
		{"", "GET", "/service/rest/v1/repositorySettings", "", "", ""},
		{"", "GET", "/", "", "", ""},
		{"", "GET", "/v3/", "", "", ""},
		{"", "GET", "/v2x", "", "", ""},
		{"", "GET", "/v20/", "", "", ""},
		{"", "GET", "/static/rapture/nexus.js", "", "", ""},
		{"", "GET", "/nexus/repository/team-a/v2/x", "", "", ""},
		// with a context path
		{"/nexus", "GET", "/nexus/repository/team-a/v2/app/manifests/1", "", "team-a", "/v2/app/manifests/1"},
		{"/nexus", "PUT", "/nexus/repository/team-a-hosted/v2/app/blobs/uploads/u1", "digest=sha256%3Aab", "team-a-hosted", "/v2/app/blobs/uploads/u1"},
		{"/nexus", "GET", "/v2/app/manifests/1", "", "team-a", "/v2/app/manifests/1"},
		{"/nexus", "GET", "/repository/team-a/v2/x", "", "", ""},
		{"/nexus", "GET", "/nexus/repository/team-b/v2/x", "", "", ""},
		{"/nexus", "GET", "/nexus/service/rest/v1/status", "", "", ""},
		{"/nexus", "GET", "/nexusx/repository/team-a/v2/", "", "", ""},
		{"/nexus", "GET", "/nexus/v2/", "", "", ""},
	} {
		repo, sub, judged, ok := mapRequest(split, tc.ctx, route.Request{Method: tc.method, Path: tc.path, Query: tc.query})
		if tc.repo == "" {
			if ok {
				t.Errorf("ctx %q: mapRequest(%s %s) = %q %q, want refused", tc.ctx, tc.method, tc.path, repo, sub)
			}
			continue
		}
		if !ok || repo != tc.repo || sub != tc.sub {
			t.Errorf("ctx %q: mapRequest(%s %s) = %q %q %v, want %q %q", tc.ctx, tc.method, tc.path, repo, sub, ok, tc.repo, tc.sub)
		}
		if want := decodedPath(tc.sub); judged != want {
			t.Errorf("ctx %q: mapRequest(%s %s) judged %q, want %q", tc.ctx, tc.method, tc.path, judged, want)
		}
	}
}

func TestDescribeParam(t *testing.T) {
	for q, want := range map[string]bool{
		"":                                  false,
		"describe":                          true,
		"describe=json":                     true,
		"n=1&describe=html":                 true,
		"n=1;describe":                      true,
		"Describe=json":                     true,
		"%64escribe=json":                   true,
		"%64%65%73%63%72%69%62%65":          true,
		"%u0064escribe":                     true,
		"%U0064ESCRIBE=1":                   true,
		"describe&n=1":                      true,
		"n=describe":                        false,
		"last=a&describer=1":                false,
		"describ":                           false,
		"describe+=1":                       false,
		"x=%64escribe":                      false,
		"%64escrib%":                        false,
		"scope=repository%3Aa%3Apull":       false,
		"digest=sha256%3A" + testDigest[7:]: false,
	} {
		if got := describeParam(q); got != want {
			t.Errorf("describeParam(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestContentRead(t *testing.T) {
	for _, c := range []struct {
		method, sub string
		want        bool
	}{
		{"GET", "/v2/app/manifests/1", true},
		{"HEAD", "/v2/a/b/manifests/sha256:00", true},
		{"GET", "/v2/app/blobs/sha256:00", true},
		{"GET", "/v2/app/blobs/uploads/0b1c", false},
		{"PUT", "/v2/app/manifests/1", false},
		{"GET", "/v2/app/tags/list", false},
		{"GET", "/v2/app/referrers/sha256:00", false},
		{"GET", "/v2/app/manifests/", false},
		{"GET", "/v2/token", false},
		{"GET", "/v1/search", false},
		// Jetty decodes the path: these are manifest and blob reads too.
		{"GET", "/v2/app/manifest%73/1", true},
		{"HEAD", "/v2/app/%6Danifests/1", true},
		{"GET", "/v2/app/blob%73/sha256:00", true},
		{"GET", "/v2/app/manifest%2573/1", true},
		// Encoded three times, the most checkPath lets through.
		{"GET", "/v2/app/manifest%252573/1", true},
		{"HEAD", "/v2/app/blob%252573/sha256:00", true},
		{"GET", "/v2/app/blobs/upload%73/0b1c", false},
		{"GET", "/v2/app/tags/lis%74", false},
	} {
		if got := contentRead(c.method, decodedPath(c.sub)); got != c.want {
			t.Errorf("contentRead(%s, %s) = %v, want %v", c.method, c.sub, got, c.want)
		}
	}
}
