package l7

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/route"
)

// jettyParamNames are the parameter names Jetty reads from a raw query:
// split at '&' only, each name decoded as UrlEncoded does.
func jettyParamNames(q string) []string {
	var names []string
	for param := range strings.SplitSeq(q, "&") {
		name, _, _ := strings.Cut(param, "=")
		names = append(names, jettyUnescape(name))
	}
	return names
}

// describedByNexus reports a query in which Nexus's repository servlet
// finds its describe parameter.
func describedByNexus(q string) bool {
	return slices.ContainsFunc(jettyParamNames(q), func(n string) bool { return strings.EqualFold(n, "describe") })
}

// FuzzRouteRequest is FuzzMirrorRequest for a team's route, over both
// HTTP versions (HTTP/2's :path is no request line: a space or '#' gets
// in): every request that reaches Nexus, an upload follow-up's question to
// the nodes included, goes to <ctx>/repository/<team-a or team-a-hosted>/
// v1|v2[/...] in every form a server behind may decode it to, on one
// request line with no '#' (where Jetty ends the query), and its query as
// Nexus gets it (without the affinity tag) names no describe parameter.
func FuzzRouteRequest(f *testing.F) {
	const uuid = "0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f"
	for _, s := range []string{
		"/v2/", "/v1/search?q=x", "/v2/token?scope=repository%3Aapp%3Apush&service=x",
		"/v2/app/tags/list?n=2&last=a", "/v2/app/manifests/1?x=1", "/v2/app/blobs/uploads/",
		"/v2/app/blobs/uploads/" + uuid + "?_state=x&_nexmux=AAAAAAAAAAAAAAAAAAAAAAAA",
		"/v2/app/blobs/uploads/" + uuid + "?_nexmux=T?digest=sha256%3Aab",
		"/v2/app/blobs/uploads/" + uuid + "?_nexmux=x?describe=json",
		"/v2/app/tags/list?_nexmux=?describe", "/v2/?n=1&_nexmux=T?%64escribe", "/v2/?_nexmux=T?%u0064escribe",
		"/v2/?_nexmux=T?x=1&_nexmux=U?describe", "/v2/?describe", "/v2/?%64escribe=1", "/v2/?a;describe",
		"/nexus/repository/team-a/v2/app/manifests/1", "/nexus/repository/team-a-hosted/v2/app/blobs/uploads/" + uuid,
		"/nexus/repository/team-b/v2/", "/repository/team-a/v2/", "/nexus/repository/team-a/v2/../../team-b/v2/",
		"/nexus/repository/team-a%2f..%2fteam-b/v2/", "/nexus/repository/team-a;x/v2/", "/nexus/repository/team-a/v2%2f..%2f..%2fteam-b/v2/",
		"/v2/..;/..;/team-b/v2/", "/v2/%2e%2e/%2e%2e/team-b/v2/", "/v2/%252e%252e/x", "/v2/app/blobs/uploads/..%2f..%2f..%2fteam-b",
		"/v2/app/blobs/uploads/" + uuid + "/..", "/v2/app/blobs/uploads/%2e%2e", "/v2//app/manifests/1", "/v2/.",
		"/v2/a#/../../team-b/v2/", "/v2/a b/tags/list", "/v2/caf\xc3\xa9/manifests/1", "/v2/app%5c..%5c..%5cteam-b",
		"/v2/app/manifests/1#?describe", "/v2/?x#&describe", "/v2/app/tags/list?describe#x", "/v2/?_nexmux=T?scope=repository%3Aapp%3Apush", "/v2%3f/../../team-b", "/v2/app/blobs/uploads/" + uuid + "%3f_nexmux=x",
		"http://nexus:8081/service/rest/v1/status", "*", "//service/rest/v1/status", "/nexus/service/rest/v1/status",
	} {
		for _, m := range []string{"GET", "HEAD", "PATCH"} {
			f.Add(m, s, false)
		}
		f.Add("PUT", s, true)
	}
	const ctx = "/nexus"
	tab, err := route.Build(route.Spec{Routes: []string{
		"team-a.example.com=pull:team-a,push:team-a-hosted",
		"team-b.example.com=pull:team-b,push:team-b-hosted",
	}})
	if err != nil {
		f.Fatal(err)
	}
	p, tr := sentProxy(f, ctx)
	const host = "team-a.example.com"
	rt := tab.LookupHost(host)
	f.Fuzz(func(t *testing.T, method, target string, h2 bool) {
		var r *http.Request
		if h2 {
			// As net/http's HTTP/2 server takes :path: any field value
			// (no control byte but tab), parsed by ParseRequestURI.
			for i := 0; i < len(target); i++ {
				if c := target[i]; c < ' ' && c != '\t' || c == 0x7f {
					return
				}
			}
			u, err := url.ParseRequestURI(target)
			if err != nil || method == "" || strings.ContainsAny(method, " \t\r\n") {
				return
			}
			r = &http.Request{Method: method, URL: u, RequestURI: target, Proto: "HTTP/2.0", ProtoMajor: 2,
				Header: http.Header{"Authorization": {"Bearer client"}}, Host: host, Body: http.NoBody}
		} else {
			head := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer client\r\n\r\n"
			if r, err = http.ReadRequest(bufio.NewReader(strings.NewReader(head))); err != nil {
				return
			}
		}
		ci := &ConnInfo{Table: tab, Route: rt, ServerName: host, TLS: true}
		r = r.WithContext(NewContext(context.Background(), ci))
		tr.sent = nil
		w := &discardWriter{h: http.Header{}}
		p.ServeHTTP(w, r)
		if len(tr.sent) == 0 && w.status < 400 {
			t.Fatalf("%s %q: %d without reaching Nexus", method, target, w.status)
		}
		for _, out := range tr.sent {
			wire := out.URL.RequestURI()
			name := method + " " + strconv.Quote(target) + " reached Nexus as " + out.Method + " " + strconv.Quote(wire)
			for i := 0; i < len(wire); i++ {
				if c := wire[i]; c <= ' ' || c == 0x7f || c == '#' {
					t.Fatalf("%s: byte %q would end or cut the request line", name, c)
				}
			}
			path, query, _ := strings.Cut(wire, "?")
			repo := ""
			if rest, ok := strings.CutPrefix(path, ctx+"/repository/"); ok {
				repo, _, _ = strings.Cut(rest, "/")
			}
			if repo != "team-a" && repo != "team-a-hosted" {
				t.Fatalf("%s: not a repository of team-a's route", name)
			}
			base := ctx + "/repository/" + repo
			dec := path
			for round := 0; round < 8; round++ {
				if w := hostileForm(dec); w != "" || !strings.HasPrefix(dec+"/", base+"/v2/") && !strings.HasPrefix(dec+"/", base+"/v1/") {
					t.Fatalf("%s; decoded %d times %q: %s, or outside %s/v1|v2", name, round, dec, w, base)
				}
				next := lenientUnescape(dec)
				if next == dec {
					break
				}
				dec = next
			}
			if describedByNexus(query) {
				t.Fatalf("%s: Nexus would describe the request", name)
			}
			if out.Host != host {
				t.Fatalf("%s with Host %q", name, out.Host)
			}
		}
	})
}
