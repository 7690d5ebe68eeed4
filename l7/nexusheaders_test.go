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
