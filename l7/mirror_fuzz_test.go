package l7

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// sentProxy is a Proxy in front of Nexus at http://nexus:8081 with context
// path ctx, whose requests tr records instead of sending.
func sentProxy(t testing.TB, ctx string) (p *Proxy, tr *sentUpstream) {
	t.Helper()
	up, err := ParseUpstreams([]string{"http://nexus:8081" + ctx})
	if err != nil {
		t.Fatal(err)
	}
	tr = &sentUpstream{}
	p, err = New(Config{Upstreams: up, Transport: tr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p, tr
}

// sentUpstream records the request a Proxy sends towards Nexus and
// answers it at once, in memory.
type sentUpstream struct{ sent []*http.Request }

func (s *sentUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	s.sent = append(s.sent, r)
	h := http.Header{"Content-Type": {"application/json"}}
	return &http.Response{StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1, Header: h, Body: io.NopCloser(strings.NewReader("{}")), ContentLength: 2, Request: r}, nil
}

// FuzzMirrorRequest: whatever method, path and query a client sends on a
// mirror name, a request that reaches Nexus goes to
// <ctx>/repository/<one of that mirror's repositories>/v2[/...], in every
// form a server behind may decode it to, with a read method (POST only to
// the token endpoint); the --mirror-auth-file credentials never go with a
// token request however it is spelt, nor in a request Nexus would describe
// (a describe parameter in the query as Nexus gets it); and a client's
// registry choice (?ns=) is answered from that registry's repository or
// refused.
func FuzzMirrorRequest(f *testing.F) {
	for _, s := range []string{
		"/nexus/repository/ghcr-proxy/v2/acme/app/manifests/1", "/v2", "/v2/",
		"/v2/token?scope=repository%3Aacme%2Fapp%3Apull&service=x",
		"/v2/quay.io/acme/tool/tags/list?n=2&ns=quay.io",
		"/v2/john.smith/app/manifests/1?ns=quay.io", "/v2/ghcr.io/acme/app/manifests/1?ns=quay.io",
		"/v1/acme/app/manifests/1?ns=ghcr.io", "/nexus/repository/ghcr-proxy/content/acme/app/manifests/1",
		"/v2//tags/list?ns=ghcr.io", "/nexus/repository/ghcr-proxy/v2//manifests/1",
		"/v2/ghcr.io/v%32/acme/app/manifests/1?ns=ghcr.io", "/v2/ghcr.io/acme/app/blobs/upload%73?ns=ghcr.io",
		"/v2/toke%6e", "/v2/toke%256e", "/nexus/repository/ghcr-proxy/v2/toke%256e",
		"/v2/library/alpine/manifests/3", "/v2/docker.io/library/alpine/blobs/sha256:abc?ns=docker.io",
		"/nexus/repository/team-a/v2/app/manifests/1", "/v2/ghcr.io/../team-a/manifests/1",
		"/v2/a/manifests/1?ns=registry-1.docker.io&ns=registry-1.docker.io", "/v2/localhost:5000/a/tags/list",
		"/v2/acme/tool/tags/list?n=2&%6es=quay.io", "/v2/quay.io/acme/tool/tags/list?ns", "/nexus/repository/ghcr-proxy/v2/a/manifests/1?n%73",
		"/quay.io/v2/acme/tool/manifests/1?ns=quay.io", "/ghcr.io/v2/acme/app/tags/list?n=1", "/docker.io/v2/../team-a/manifests/1",
		"/v2/ghcr.io/acme/app/tags/list?_nexmux=x?describe=json", "/v2/?ns=quay.io&_nexmux=?%64escribe", "/v2/acme/app/tags/list?_nexmux=T?ns=ghcr.io",
	} {
		for _, m := range []string{"GET", "HEAD", "POST"} {
			f.Add(m, s, false, false)
		}
		f.Add("GET", s, true, true)
	}
	const ctx, mirrorAuth = "/nexus", "Basic bWlycm9yOnNlY3JldA=="
	tab, err := route.Build(route.Spec{
		Routes: []string{"team-a.example.com=team-a"},
		Mirrors: []string{
			"mirror.example.com/ghcr.io=ghcr-proxy", "mirror.example.com/quay.io=quay-proxy",
			"hub.example.com/docker.io=hub-proxy", "hub.example.com/ghcr.io=ghcr-proxy",
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	p, tr := sentProxy(f, ctx)
	p.SetMirrorAuth(mirrorAuth)
	f.Fuzz(func(t *testing.T, method, target string, hub, withAuth bool) {
		host := "mirror.example.com"
		if hub {
			host = "hub.example.com"
		}
		head := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n"
		if withAuth {
			head += "Authorization: Bearer client\r\n"
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head + "\r\n")))
		if err != nil {
			return
		}
		rt := tab.LookupHost(host)
		ci := &ConnInfo{Table: tab, Route: rt, ServerName: host, TLS: true}
		r = r.WithContext(NewContext(context.Background(), ci))
		tr.sent = nil
		w := &discardWriter{h: http.Header{}}
		p.ServeHTTP(w, r)
		if len(tr.sent) == 0 {
			if w.status < 400 {
				t.Fatalf("%s %s on %s: %d without reaching Nexus", method, target, host, w.status)
			}
			return
		}
		if len(tr.sent) > 1 {
			t.Fatalf("%s %s on %s reached Nexus %d times", method, target, host, len(tr.sent))
		}
		out := tr.sent[0]
		wire := out.URL.RequestURI()
		path, query, _ := strings.Cut(wire, "?")
		m := rt.Mirror
		repo := ""
		if rest, ok := strings.CutPrefix(path, ctx+"/repository/"); ok {
			repo, _, _ = strings.Cut(rest, "/")
		}
		prefix := ctx + "/repository/" + repo + "/v2"
		if !m.Owns(repo) || path != prefix && !strings.HasPrefix(path, prefix+"/") {
			t.Fatalf("%s %s on %s reached Nexus as %s: not under a repository of %v", method, target, host, wire, m)
		}
		// Every decoding of the path a server behind may make stays there.
		dec := path
		for round := 0; round < 8; round++ {
			if w := hostileForm(dec); w != "" || !strings.HasPrefix(dec+"/", prefix+"/") {
				t.Fatalf("%s %s on %s reached Nexus as %s; decoded %d times %q: %s", method, target, host, wire, round, dec, w)
			}
			if route.IsTokenPath(dec) && out.Header.Get("Authorization") == mirrorAuth {
				t.Fatalf("%s %s on %s: token request %s sent with the mirror's credentials", method, target, host, wire)
			}
			next := lenientUnescape(dec)
			if next == dec {
				break
			}
			dec = next
		}
		if out.Method != http.MethodGet && out.Method != http.MethodHead && !(out.Method == http.MethodPost && route.IsTokenPath(decodedPath(path))) {
			t.Fatalf("%s %s on %s reached Nexus as %s %s", method, target, host, out.Method, wire)
		}
		// The --mirror-auth-file credentials would be in the description.
		if describedByNexus(query) {
			t.Fatalf("%s %s on %s reached Nexus as %s: Nexus would describe the request", method, target, host, wire)
		}
		// ns is whatever url.ParseQuery reads as its key ("%6es", a bare
		// "ns"), as Nexus would.
		if sent, _ := url.ParseQuery(query); sent.Has("ns") {
			t.Fatalf("%s %s on %s: ns passed on to Nexus: %s", method, target, host, wire)
		}
		_, targetQuery, _ := strings.Cut(target, "?")
		// As nexmux reads it: the affinity tag out, a '?' in its value
		// ending it ("_nexmux=T?ns=quay.io" names quay.io).
		targetQuery, _ = upstream.SplitTag(targetQuery)
		asked, _ := url.ParseQuery(targetQuery)
		// /v2/ and the token are the default registry's repository (a
		// Nexus token is good in every repository), however asked for.
		sub := decodedPath(strings.TrimPrefix(path, prefix))
		// Without ns, docker's reference grammar names the registry: a
		// first component with a '.' or ':', or localhost, is one;
		// otherwise the image is Docker Hub's.
		if reqPath, _, _ := strings.Cut(target, "?"); strings.HasPrefix(reqPath, "/v2/") && !asked.Has("ns") && sub != "" && sub != "/" && sub != "/token" {
			seg, _, _ := strings.Cut(reqPath[len("/v2/"):], "/")
			reg := route.DockerHub
			if strings.ContainsAny(seg, ".:") || strings.EqualFold(seg, "localhost") {
				reg, _ = route.CanonicalRegistry(seg)
			}
			if want, _ := m.Repo(reg); want != repo {
				t.Fatalf("%s %s on %s: an image of %s, yet Nexus got %s", method, target, host, reg, wire)
			}
		}
		// containerd's host path without override_path, /<registry>/v2/...,
		// names its registry.
		if reqPath, _, _ := strings.Cut(target, "?"); !strings.HasPrefix(reqPath+"/", "/v2/") && !strings.HasPrefix(reqPath, ctx+"/repository/") {
			seg, _, _ := strings.Cut(strings.TrimPrefix(reqPath, "/"), "/")
			if reg, ok := route.CanonicalRegistry(seg); !ok || !isRegistryHost(seg) {
				t.Fatalf("%s %s on %s reached Nexus as %s: no registry before /v2/", method, target, host, wire)
			} else if want, _ := m.Repo(reg); want != repo {
				t.Fatalf("%s %s on %s: an image of %s, yet Nexus got %s", method, target, host, reg, wire)
			}
		}
		// A registry the client named with containerd's ns=REGISTRY is
		// served from that registry's repository.
		if sub != "" && sub != "/" && sub != "/token" {
			for _, name := range asked["ns"] {
				reg, ok := route.CanonicalRegistry(name)
				if want, mirrored := m.Repo(reg); !ok || !mirrored || want != repo {
					t.Fatalf("%s %s on %s: ns names %q, yet Nexus got %s", method, target, host, name, wire)
				}
			}
		}
	})
}
