package l7

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// The address of the node that answered reaches the client in no header:
// not in one nexmux knows nothing of (a front's Via, a node's own name
// for itself), and not in the query of a URL it maps onto the public
// name, which keeps its query as Nexus wrote it. Such a header is left
// out, as a URL on another host is.
func TestNodeAddressInNoHeader(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		host, _, _ := net.SplitHostPort(node)
		fmt.Fprintf(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nDocker-Upload-UUID: u1\r\nRange: 0-0\r\n"+
			"Location: /repository/team-a/v2/app/blobs/uploads/u1?next=http://%s/service/rest\r\n"+
			"Link: </v2/_catalog?last=%s>; rel=\"next\"\r\n"+
			"Via: 1.1 %s (front)\r\nX-Nexus-Node: %s\r\n\r\n", node, node, node, host)
		return true
	})
	node = n.addr
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	host, _, _ := net.SplitHostPort(node)
	resp, _ := send(t, addr, http.MethodPost, "/v2/app/blobs/uploads/", nil)
	for k, vs := range resp.Header {
		for _, v := range vs {
			if strings.Contains(v, host) {
				t.Errorf("%s: %q names the node", k, v)
			}
		}
	}
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Docker-Upload-Uuid") != "u1" || resp.Header.Get("Range") != "0-0" {
		t.Errorf("%s %v: want Nexus's 202 with its other headers", resp.Status, resp.Header)
	}
}

// A node on the host clients name nexmux by (an address both share, on
// another port) leaves the URLs mapped onto that name alone: only its
// address with its port is the node's there.
func TestNodeOnThePublicHostKeepsItsURLs(t *testing.T) {
	uploadLocationOnPublicName(t, func(node string) string {
		host, _, _ := net.SplitHostPort(node)
		return net.JoinHostPort(host, "5000")
	})
}

// uploadLocationOnPublicName starts a node that answers an upload's POST
// with a Location of its own form, posts through port route 5000 naming
// nexmux public(the node's address) ("" skips the test), and fails t
// unless the client gets that Location on the public name.
func uploadLocationOnPublicName(t *testing.T, public func(node string) string) {
	t.Helper()
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nLocation: /repository/team-a/v2/app/blobs/uploads/u1\r\n\r\n")
		return true
	})
	pub := public(n.addr)
	if pub == "" {
		t.Skipf("no public name for a node on %s", n.addr)
	}
	w := sendOnPortRoute(t, n.addr, pub, http.MethodPost, "/v2/app/blobs/uploads/")
	if loc := w.Header().Get("Location"); w.Code != http.StatusAccepted || !strings.HasPrefix(loc, "http://"+pub+"/v2/app/blobs/uploads/u1?_nexmux=") {
		t.Errorf("node %s, public name %s: client got %d, Location %q, %q; want it on the public name", n.addr, pub, w.Code, loc, w.Body)
	}
}

// sendOnPortRoute sends a request through port route 5000 (team-a) of a
// proxy in front of the node at node, naming nexmux pub.
func sendOnPortRoute(t *testing.T, node, pub, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	spec, err := upstream.ParseSpec([]string{"http://" + node}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	up := NewUpstreams(spec, upstream.NewSet(spec, logger), UpstreamOptions{})
	tab, err := route.Build(route.Spec{Ports: []string{"5000=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	p, err := New(Config{Upstreams: up, Transport: tr, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(method, path, nil)
	req.Host = pub
	req = req.WithContext(NewContext(req.Context(), &ConnInfo{Table: tab, Route: tab.LookupPort(5000), ByPort: true, Client: netip.MustParseAddrPort("192.0.2.1:40000")}))
	w := httptest.NewRecorder()
	p.ServeHTTP(w, req)
	return w
}

// An error's words, as its headers, keep the public name where the node
// shares its host (on another port): only the node's address with its
// port reads "Nexus" there.
func TestNodeOnThePublicHostKeepsItsErrorWords(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		host, _, _ := net.SplitHostPort(node)
		body := `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to http://` + net.JoinHostPort(host, "5000") + `/v2/app (node ` + node + `)","detail":null}]}`
		fmt.Fprintf(c, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	})
	node = n.addr
	host, _, _ := net.SplitHostPort(node)
	pub := net.JoinHostPort(host, "5000")
	w := sendOnPortRoute(t, node, pub, http.MethodGet, "/v2/app/blobs/sha256:"+strings.Repeat("0", 64))
	if want := `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to http://` + pub + `/v2/app (node Nexus)","detail":null}]}`; w.Code != http.StatusNotFound || w.Body.String() != want {
		t.Errorf("node %s, public name %s: client got %d %s, want %s", node, pub, w.Code, w.Body, want)
	}
}

// hideNodeHeaders on an IPv6 node: its bracketed address with the port,
// or its address alone, in any case; on a public name sharing its
// address, only the one with the port.
func TestHideNodeHeadersIPv6(t *testing.T) {
	for _, c := range []struct {
		public string
		v      string
		kept   bool
	}{
		{"team-a.example.com", "1.1 [fd00::1]:8081", false},
		{"team-a.example.com", "node FD00::1", false},
		{"team-a.example.com", "https://team-a.example.com/v2/x", true},
		{"[fd00::1]:443", "https://[fd00::1]:443/v2/x", true},
		{"[fd00::1]:443", "http://[fd00::1]:8081/x", false},
	} {
		h := http.Header{"X-Test": {c.v}}
		hideNodeHeaders(h, "[fd00::1]:8081", c.public, false)
		if kept := h.Get("X-Test") != ""; kept != c.kept {
			t.Errorf("node [fd00::1]:8081, public name %s: %q kept %v, want %v", c.public, c.v, kept, c.kept)
		}
	}
}

// A Bearer challenge's service naming Nexus's own host (host[:port], no
// URL) names the public token endpoint, as a URL there does: left as it
// came it named the node, and the challenge, left out for that, left the
// client with no way to a token.
func TestChallengeServiceNamingTheNode(t *testing.T) {
	const token = pubBase + "/v2/token"
	for _, c := range []struct{ in, want string }{
		{`Bearer realm=http://127.0.0.1:8081/repository/team-a/v2/token,service=127.0.0.1:8081`, `Bearer realm="` + token + `",service="` + token + `"`},
		{`Bearer realm="/v2/token",service="NEXUS"`, `Bearer realm="` + token + `",service="` + token + `"`},
		{`Bearer realm="/v2/token",service="registry.docker.io"`, `Bearer realm="` + token + `",service="registry.docker.io"`},
	} {
		p := testURLs("")
		p.hostnames = append(p.hostnames, "127.0.0.1")
		if got := p.rewriteChallenge(c.in); got != c.want {
			t.Errorf("rewriteChallenge(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

// A redirect's body (a page pointing the way, as servlet containers
// write one) names the node that answered "Nexus", as an error page's
// words do.
func TestRedirectBodyHidesTheNode(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		page := `<a href="http://` + node + `/repository/team-a/v2/app/manifests/2">moved</a>`
		fmt.Fprintf(c, "HTTP/1.1 302 Found\r\nContent-Type: text/html\r\nLocation: /repository/team-a/v2/app/manifests/2\r\nContent-Length: %d\r\n\r\n%s", len(page), page)
		return true
	})
	node = n.addr
	host, _, _ := net.SplitHostPort(node)
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://team-a.example.com/v2/app/manifests/2" || !strings.Contains(string(b), "moved") {
		t.Fatalf("%s, Location %q, body %q: want Nexus's redirect, mapped", resp.Status, resp.Header.Get("Location"), b)
	}
	if strings.Contains(string(b), host) {
		t.Errorf("the client was told the node's address: %s", b)
	}
}

// Another spelling of the node's host as the public name ("127.0.0.1.",
// "[::ffff:127.0.0.1]", upper case) is the node's host still: the URLs
// mapped onto it were left out as naming the node (a client reaching
// nexmux by "nexus.corp." lost every Location and its token realm). They
// come back on the Host in its lowercase form without the trailing dot.
func TestNodeHostSpelledOtherwiseKeepsItsURLs(t *testing.T) {
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nLocation: /repository/team-a/v2/app/blobs/uploads/u1\r\n"+
			"WWW-Authenticate: Bearer realm=\"http://"+r.Host+"/repository/team-a/v2/token\",service=\"x\"\r\n\r\n")
		return true
	})
	host, _, _ := net.SplitHostPort(n.addr)
	for pub, want := range map[string]string{
		host + ".:5000":                               host + ":5000",
		"[::ffff:" + host + "]:5000":                  "[::ffff:" + host + "]:5000",
		"[::FFFF:" + host + "]":                       "[::ffff:" + host + "]",
		host + ".":                                    host,
		strings.ToUpper(host) + ".:":                  host,
		"0x7f.0.0.1:5000":                             "0x7f.0.0.1:5000",
		"team-a.example.com.:5000":                    "team-a.example.com:5000",
		"TEAM-A.Example.COM:5000":                     "team-a.example.com:5000",
		strings.Replace(host, "1", "01", 1) + ":5000": strings.Replace(host, "1", "01", 1) + ":5000",
	} {
		w := sendOnPortRoute(t, n.addr, pub, http.MethodPost, "/v2/app/blobs/uploads/")
		if loc := w.Header().Get("Location"); w.Code != http.StatusAccepted || !strings.HasPrefix(loc, "http://"+want+"/v2/app/blobs/uploads/u1?_nexmux=") {
			t.Errorf("node %s, Host %s: %d, Location %q; want it on http://%s", n.addr, pub, w.Code, loc, want)
		}
		if ch, wantCh := w.Header().Get("Www-Authenticate"), `Bearer realm="http://`+want+`/v2/token",service="x"`; ch != wantCh {
			t.Errorf("node %s, Host %s: challenge %q, want %q", n.addr, pub, ch, wantCh)
		}
	}
}

func TestPublicAuthority(t *testing.T) {
	for in, want := range map[string]string{
		"team.example.com":       "team.example.com",
		"team.example.com:8443":  "team.example.com:8443",
		"Team.Example.COM.:":     "team.example.com",
		"Team.Example.COM.:8443": "team.example.com:8443",
		"team.example.com.":      "team.example.com",
		"127.0.0.1.:8082":        "127.0.0.1:8082",
		"[::1]:8443":             "[::1]:8443",
		"[::1]":                  "[::1]",
		"[::FFFF:7F00:1]:8443":   "[::ffff:7f00:1]:8443",
		"team.example.com:":      "team.example.com",
	} {
		if got := publicAuthority(in); got != want {
			t.Errorf("publicAuthority(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = publicAuthority("team.example.com:8443") }); n != 0 {
		t.Errorf("publicAuthority allocates %v times for a canonical Host", n)
	}
}
