package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Content-Location and Refresh carry URLs as Location does: Nexus's own
// (a node's address, a /repository/<repo>/ path) are mapped onto the
// public name, others left out. Alt-Svc advertises Nexus's alternative
// services, not nexmux's: never passed on. A cookie's Domain naming the
// node is useless to a client and names the node: dropped, the cookie
// is the public name's.
func TestNexusHeadersNamingTheNodeAreMapped(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		host, _, _ := net.SplitHostPort(node)
		switch {
		case strings.HasSuffix(r.URL.Path, "/1"):
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Location: http://%s/repository/team-a/v2/app/manifests/1\r\n"+
				"Refresh: 0; url=http://%s/repository/team-a/v2/app/tags/list\r\nAlt-Svc: h2=\"%s\"; ma=60\r\n"+
				"Set-Cookie: NXSESSIONID=abc; Domain=%s; Path=/; HttpOnly\r\nSet-Cookie: other=1; Path=/\r\n\r\n", node, node, node, host)
		default:
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Location: https://elsewhere.example.com/x\r\n"+
				"Refresh: 5;URL='http://%s/service/rest/v1/status'\r\nAlt-Svc: clear\r\n\r\n", node)
		}
		return true
	})
	node = n.addr
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	resp, _ := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil)
	want := map[string][]string{
		"Content-Location": {"http://team-a.example.com/v2/app/manifests/1"},
		"Refresh":          {"0; url=http://team-a.example.com/v2/app/tags/list"},
		"Alt-Svc":          nil,
		"Set-Cookie":       {"NXSESSIONID=abc; Path=/; HttpOnly", "other=1; Path=/"},
	}
	for k, v := range want {
		if got := resp.Header.Values(k); !slices.Equal(got, v) {
			t.Errorf("%s: client got %q, want %q", k, got, v)
		}
	}
	resp, _ = send(t, addr, http.MethodGet, "/v2/app/manifests/2", nil)
	want = map[string][]string{
		"Content-Location": nil,
		"Refresh":          {"5;URL='http://team-a.example.com/service/rest/v1/status'"},
		"Alt-Svc":          nil,
	}
	for k, v := range want {
		if got := resp.Header.Values(k); !slices.Equal(got, v) {
			t.Errorf("%s: client got %q, want %q", k, got, v)
		}
	}
}

// The forms of Refresh browsers read, and cookies' Domain.
func TestRewriteRefreshAndCookieDomain(t *testing.T) {
	p := testURLs("")
	for _, c := range []struct{ in, want string }{ // want "-": left out
		{"0", "0"},
		{" 5 ", " 5 "},
		{"0;url=/repository/team-a/v2/x", "0;url=" + pubBase + "/v2/x"},
		{`1; URL = "http://nexus:8081/repository/team-a/v2/x" trailing`, `1; URL = "` + pubBase + `/v2/x" trailing`},
		{"2, http://nexus:8081/service/rest/v1/status", "2, " + pubBase + "/service/rest/v1/status"},
		{"0; url=https://elsewhere.example.com/x", "-"},
		{"0; 'https://elsewhere.example.com/x'", "-"},
		{"0; url=", "0; url="},
		{"soon; url=/v2/", "-"},
		{"0x; url=/v2/", "-"},
	} {
		got, ok := p.rewriteRefresh(c.in)
		if !ok {
			got = "-"
		}
		if got != c.want {
			t.Errorf("rewriteRefresh(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"a=1; Path=/", "a=1; Path=/"},
		{"a=1; Domain=nexus; Path=/", "a=1; Path=/"},
		{"a=1;DOMAIN=.Team-A.example.com", "a=1;DOMAIN=.Team-A.example.com"},
		{"a=1; domain=example.com; Secure", "a=1; Secure"},
		{"domain=1; Path=/", "domain=1; Path=/"},
	} {
		if got := p.cookieOnPublicName(c.in); got != c.want {
			t.Errorf("cookieOnPublicName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Nexus's Server header names its exact version and edition, and a front
// between nexmux and Nexus may add X-Powered-By: neither reaches clients,
// on a manifest, an error page turned into a Registry API error, a HEAD
// or an upload's answer (which has URLs to rewrite). Nexus's security
// headers pass as they came.
func TestNexusVersionHeadersStayInside(t *testing.T) {
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		const nexusHeaders = "Server: Nexus/3.68.1-02 (OSS)\r\nX-Powered-By: Jetty(9.4.54)\r\nX-Content-Type-Options: nosniff\r\n"
		switch {
		case r.Method == http.MethodPost:
			fmt.Fprintf(c, "HTTP/1.1 202 Accepted\r\n%sContent-Length: 0\r\nDocker-Upload-UUID: u1\r\nRange: 0-0\r\n"+
				"Location: /repository/team-a/v2/app/blobs/uploads/u1\r\n\r\n", nexusHeaders)
		case strings.HasSuffix(r.URL.Path, "/404"):
			page := "<html><title>Error 404 Not Found</title></html>"
			fmt.Fprintf(c, "HTTP/1.1 404 Not Found\r\n%sContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s", nexusHeaders, len(page), page)
		default:
			body := "{}"
			if r.Method == http.MethodHead {
				body = ""
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\n%sContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 2\r\n\r\n%s", nexusHeaders, body)
		}
		return true
	})
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v2/app/manifests/1"},
		{http.MethodHead, "/v2/app/manifests/1"},
		{http.MethodGet, "/v2/app/manifests/404"},
		{http.MethodPost, "/v2/app/blobs/uploads/"},
	} {
		resp, _ := send(t, addr, c.method, c.path, nil)
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s: %s, want Nexus's answer", c.method, c.path, resp.Status)
		}
		for _, k := range []string{"Server", "X-Powered-By"} {
			if v := resp.Header.Values(k); v != nil {
				t.Errorf("%s %s: client got %s %q, want none", c.method, c.path, k, v)
			}
		}
		if v := resp.Header.Get("X-Content-Type-Options"); v != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q, want Nexus's nosniff", c.method, c.path, v)
		}
	}
}
