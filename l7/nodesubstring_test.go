package l7

import (
	"bufio"
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

// A node's host found inside a longer name or address is not the node:
// the public name the URLs were just mapped onto may hold it (a team's
// name under the node's domain, an address the node's is a prefix of).
func TestHideNodeHeadersKeepsNamesHoldingTheNodesHost(t *testing.T) {
	for _, c := range []struct{ node, public, k, v string }{
		{"registry.example.com:8081", "team-a.registry.example.com", "Location", "https://team-a.registry.example.com/v2/app/blobs/uploads/u1?_nexmux=x"},
		{"registry.example.com:8081", "team-a.registry.example.com", "Www-Authenticate", `Bearer realm="https://team-a.registry.example.com/v2/token",service="https://team-a.registry.example.com/v2/token"`},
		{"nexus.lan:8081", "docker.nexus.lan", "Location", "https://docker.nexus.lan/v2/app/manifests/1"},
		{"10.0.0.1:8081", "10.0.0.10:5000", "Location", "http://10.0.0.10:5000/v2/app/blobs/uploads/u1?_nexmux=x"},
		{"192.168.1.1:8081", "192.168.1.12:5000", "Location", "http://192.168.1.12:5000/v2/app/blobs/uploads/u1"},
	} {
		h := http.Header{c.k: {c.v}}
		hideNodeHeaders(h, c.node, c.public, false)
		if h.Get(c.k) != c.v {
			t.Errorf("node %s, public name %s: %s %q left out, want kept", c.node, c.public, c.k, c.v)
		}
	}
}

// Through the proxy: a client naming nexmux by an address the node's is a
// prefix of (node 127.0.0.1, nexmux 127.0.0.10) gets its upload's Location.
func TestPublicAddressHoldingTheNodesKeepsItsLocation(t *testing.T) {
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nLocation: /repository/team-a/v2/app/blobs/uploads/u1\r\n\r\n")
		return true
	})
	if host, _, _ := net.SplitHostPort(n.addr); host != "127.0.0.1" {
		t.Skipf("node on %s, not 127.0.0.1", n.addr)
	}
	spec, err := upstream.ParseSpec([]string{"http://" + n.addr}, nil)
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
	const public = "127.0.0.10:5000"
	req := httptest.NewRequest(http.MethodPost, "/v2/app/blobs/uploads/", nil)
	req.Host = public
	req = req.WithContext(NewContext(req.Context(), &ConnInfo{Table: tab, Route: tab.LookupPort(5000), ByPort: true, Client: netip.MustParseAddrPort("192.0.2.1:40000")}))
	w := httptest.NewRecorder()
	p.ServeHTTP(w, req)
	if loc := w.Header().Get("Location"); w.Code != http.StatusAccepted || !strings.HasPrefix(loc, "http://"+public+"/v2/app/blobs/uploads/u1?_nexmux=") {
		t.Errorf("node %s, public name %s: client got %d, Location %q, %q; want it on the public name", n.addr, public, w.Code, loc, w.Body)
	}
}
