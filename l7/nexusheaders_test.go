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
