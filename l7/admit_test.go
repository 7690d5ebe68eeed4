package l7

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
)

// admitStack serves the Proxy over real HTTP on loopback, in front of a
// Nexus stand-in that counts what reaches it. Every connection carries the
// team-a route, as mux would attach it.
func admitStack(t *testing.T) (addr string, reached *atomic.Int64) {
	t.Helper()
	p, ci, reached := admitProxy(t)
	ln := testnet.Listen(t)
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return NewContext(ctx, ci)
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), reached
}

// admitProxy is admitStack's Proxy, its Nexus stand-in, and the connection
// info of a team-a connection.
func admitProxy(t *testing.T) (*Proxy, *ConnInfo, *atomic.Int64) {
	t.Helper()
	reached := &atomic.Int64{}
	nexusLn := testnet.Listen(t)
	nexus := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Nexus", "yes")
	})}
	go func() { _ = nexus.Serve(nexusLn) }()
	t.Cleanup(func() { nexus.Close() })

	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	up, err := ParseUpstreams([]string{"http://" + nexusLn.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	p, err := New(Config{Upstreams: up, Transport: tr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p, &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com"}, reached
}

// roundTrip writes raw request bytes (any method, any header) and reads
// the one response.
func roundTrip(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// errorCode returns the code of a Docker-style JSON error body.
func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) != 1 {
		t.Fatalf("not a Docker-style error (%v): %q", err, body)
	}
	return e.Errors[0].Code
}

// Only the methods the Registry API uses reach Nexus; the rest are refused
// with 405 before a byte goes upstream.
func TestMethodAllowlist(t *testing.T) {
	addr, reached := admitStack(t)
	for _, tc := range []struct {
		method string
		want   int // 0: Nexus answers
	}{
		{http.MethodGet, 0},
		{http.MethodHead, 0},
		{http.MethodPost, 0},
		{http.MethodPut, 0},
		{http.MethodPatch, 0},
		{http.MethodDelete, 0},
		{http.MethodOptions, 0},
		{http.MethodTrace, http.StatusMethodNotAllowed},
		{"PROPFIND", http.StatusMethodNotAllowed},
		{"MKCOL", http.StatusMethodNotAllowed},
		{"get", http.StatusMethodNotAllowed}, // methods are case-sensitive
		{"BREW", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.method, func(t *testing.T) {
			if got := RegistryMethod(tc.method); got != (tc.want == 0) {
				t.Errorf("RegistryMethod(%q) = %v", tc.method, got)
			}
			before := reached.Load()
			resp, body := roundTrip(t, addr, tc.method+" /v2/app/manifests/1 HTTP/1.1\r\nHost: team-a.example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			if tc.want == 0 {
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Nexus") != "yes" || reached.Load() != before+1 {
					t.Fatalf("status %d, X-Nexus %q, Nexus reached %d times: want Nexus's 200 once", resp.StatusCode, resp.Header.Get("X-Nexus"), reached.Load()-before)
				}
				return
			}
			if resp.StatusCode != tc.want || errorCode(t, body) != "UNSUPPORTED" {
				t.Fatalf("status %d, body %q: want %d UNSUPPORTED", resp.StatusCode, body, tc.want)
			}
			if got := resp.Header.Get("Allow"); got != "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS" {
				t.Errorf("Allow %q: a 405 names the methods served", got)
			}
			if n := reached.Load() - before; n != 0 {
				t.Fatalf("Nexus reached %d times", n)
			}
		})
	}
}

// A protocol upgrade answered by Nexus with 101 would turn the connection
// into a raw tunnel past every path check: refused, Nexus never asked.
func TestUpgradeRefused(t *testing.T) {
	addr, reached := admitStack(t)
	for _, tc := range []struct {
		name, req string
	}{
		{"websocket", "GET /v2/ HTTP/1.1\r\nHost: team-a.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"},
		{"h2c", "GET /v2/ HTTP/1.1\r\nHost: team-a.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"},
		{"upgrade on a push", "PATCH /v2/app/blobs/uploads/1 HTTP/1.1\r\nHost: team-a.example.com\r\nConnection: Upgrade\r\nUpgrade: tls/1.3\r\nContent-Length: 3\r\n\r\nabc"},
		{"without Connection: Upgrade", "GET /v2/ HTTP/1.1\r\nHost: team-a.example.com\r\nUpgrade: websocket\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := roundTrip(t, addr, tc.req)
			if resp.StatusCode != http.StatusBadRequest || errorCode(t, body) != "UNSUPPORTED" || !strings.Contains(body, "upgrades are not served") {
				t.Fatalf("status %d, body %q: want 400 UNSUPPORTED", resp.StatusCode, body)
			}
		})
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("Nexus reached %d times", n)
	}
	// The same connection shape without Upgrade goes through: the refusal
	// is the header's doing.
	if resp, _ := roundTrip(t, addr, "GET /v2/ HTTP/1.1\r\nHost: team-a.example.com\r\nConnection: close\r\n\r\n"); resp.StatusCode != http.StatusOK || reached.Load() != 1 {
		t.Fatalf("plain GET: status %d, Nexus reached %d times", resp.StatusCode, reached.Load())
	}
}

// CONNECT and absolute-form targets would make nexmux a forward proxy.
func TestForwardProxyFormsRefused(t *testing.T) {
	addr, reached := admitStack(t)
	for _, req := range []string{
		"CONNECT team-a.example.com:443 HTTP/1.1\r\nHost: team-a.example.com:443\r\n\r\n",
		fmt.Sprintf("GET http://%s/v2/ HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n", "nexus:8081"),
	} {
		resp, body := roundTrip(t, addr, req)
		if resp.StatusCode != http.StatusBadRequest || errorCode(t, body) != "UNSUPPORTED" {
			t.Errorf("%q: status %d, body %q: want 400 UNSUPPORTED", req, resp.StatusCode, body)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("Nexus reached %d times", n)
	}
}

// HTTP/1.0 allows a request without Host; forwarded, Go would put the
// Nexus node's own address there, and Nexus builds its realm from it.
func TestHostRequired(t *testing.T) {
	addr, reached := admitStack(t)
	resp, body := roundTrip(t, addr, "GET /v2/ HTTP/1.0\r\n\r\n")
	if resp.StatusCode != http.StatusBadRequest || errorCode(t, body) != "UNSUPPORTED" || !strings.Contains(body, "Host header is required") {
		t.Fatalf("status %d, body %q: want 400 UNSUPPORTED", resp.StatusCode, body)
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("Nexus reached %d times", n)
	}
	if resp, _ := roundTrip(t, addr, "GET /v2/ HTTP/1.0\r\nHost: team-a.example.com\r\n\r\n"); resp.StatusCode != http.StatusOK || reached.Load() != 1 {
		t.Fatalf("HTTP/1.0 with Host: status %d, Nexus reached %d times", resp.StatusCode, reached.Load())
	}
	// A port route and a connection without SNI accept any Host, but not
	// none.
	p, ci, reached := admitProxy(t)
	for name, ci := range map[string]*ConnInfo{
		"port route": {Table: ci.Table, Route: ci.Route, ByPort: true},
		"no SNI":     {Table: ci.Table, Route: ci.Route},
	} {
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.Host, r.Proto, r.ProtoMinor = "", "HTTP/1.0", 0
		w := serveOn(p, ci, r)
		if w.Code != http.StatusBadRequest || errorCode(t, w.Body.String()) != "UNSUPPORTED" {
			t.Errorf("%s: status %d, body %q: want 400 UNSUPPORTED", name, w.Code, w.Body.String())
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("Nexus reached %d times", n)
	}
}

// HTTP/2 lets a space (and, over some clients, other bytes HTTP/1 cannot
// carry) into :path. A query holding one would split the request line
// nexmux sends to Nexus: refused, Nexus never asked. The request is built
// as net/http's HTTP/2 server hands it to the handler.
func TestQueryUnforwardableRefused(t *testing.T) {
	p, ci, reached := admitProxy(t)
	for _, q := range []string{"x /repository/team-b/v2/ HTTP/1.1", "a=b\tc", "a=\x7f", "n=1 "} {
		r := httptest.NewRequest(http.MethodGet, "https://team-a.example.com/v2/", nil)
		r.RequestURI = "/v2/?" + q
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		w := serveOn(p, ci, r)
		// nexmux's own refusal: a Go server behind refuses a request
		// line split by a space with a 400 of its own before its handler
		// (reached) counts it; a Nexus behind may not.
		if w.Code != http.StatusBadRequest || errorCode(t, w.Body.String()) != "UNSUPPORTED" || !strings.Contains(w.Body.String(), "nexmux: space or control byte in the query") {
			t.Errorf("query %q: status %d, body %q: want nexmux's 400 UNSUPPORTED", q, w.Code, w.Body.String())
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("Nexus reached %d times", n)
	}
	// What registry clients send goes through.
	for _, q := range []string{"n=100&last=app", "digest=sha256%3A4f53&_state=abc%3D%3D", "scope=repository:app:pull,push&service=x"} {
		r := httptest.NewRequest(http.MethodGet, "https://team-a.example.com/v2/app/tags/list", nil)
		r.RequestURI = "/v2/app/tags/list?" + q
		w := serveOn(p, ci, r)
		if w.Code != http.StatusOK || w.Header().Get("X-Nexus") != "yes" {
			t.Errorf("query %q: status %d, body %q: want Nexus's 200", q, w.Code, w.Body.String())
		}
	}
}

// serveOn has p serve r as a request of a connection carrying ci.
func serveOn(p *Proxy, ci *ConnInfo, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r.WithContext(NewContext(r.Context(), ci)))
	return w
}

// A Host refused with 421 is named cut at 255 bytes, with its length: the
// message is the access line's reason and the response body, and a client
// may send 64 KiB of Host (over HTTP/2, indexed once, then for a byte per
// request).
func TestLongHostRefusalCut(t *testing.T) {
	p, ci, _ := admitProxy(t)
	host := strings.Repeat("h", 60000) + ".example.org"
	r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	r.Host = host
	status, _, msg := p.admit(ci, r)
	if status != http.StatusMisdirectedRequest {
		t.Fatalf("status %d, want 421", status)
	}
	if len(msg) > 400 || !strings.Contains(msg, strings.Repeat("h", 255)+"... (60012 bytes)") {
		t.Errorf("421 message (%d bytes) does not hold the Host cut with its length: %.400q", len(msg), msg)
	}
}

// A Host whose port is not a number is refused before Nexus, which would
// build the realm and Locations it hands back from it; routing ignores the
// port, so it passed. Hosts with a real port, none or an empty one pass.
func TestHostPortMustBeANumber(t *testing.T) {
	p, ci, reached := admitProxy(t)
	for _, h := range []string{"team-a.example.com:evil.example", "team-a.example.com:443x", "team-a.example.com:65536",
		"team-a.example.com:-1", "team-a.example.com:000443", "team-a.example.com: 443",
		"team-a.example.com:evil.example:443", "team-a.example.com::443", "team-a.example.com:x]", "team-a.example.com:0"} {
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.Host = h
		w := serveOn(p, ci, r)
		if w.Code != http.StatusBadRequest || errorCode(t, w.Body.String()) != "UNSUPPORTED" {
			t.Errorf("Host %q: status %d, body %q: want 400 UNSUPPORTED", h, w.Code, w.Body.String())
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("Nexus reached %d times", n)
	}
	for _, h := range []string{"team-a.example.com", "team-a.example.com:443", "team-a.example.com:", "team-a.example.com:8443", "TEAM-A.example.com.:443"} {
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.Host = h
		if w := serveOn(p, ci, r); w.Code != http.StatusOK {
			t.Errorf("Host %q: status %d, body %q: want Nexus's 200", h, w.Code, w.Body.String())
		}
	}
	// Where any Host is served (a port route, no SNI), the port is checked
	// all the same; an IPv6 literal keeps its colons.
	port := &ConnInfo{Table: ci.Table, Route: ci.Route, ByPort: true}
	for h, want := range map[string]int{"nexus.example.com:evil.example:443": http.StatusBadRequest,
		"[2001:db8::1]:8082": http.StatusOK, "[2001:db8::1]": http.StatusOK, "2001:db8::1": http.StatusBadRequest,
		"nexus.example.com:evil.example]": http.StatusBadRequest, "[::1]x:80": http.StatusBadRequest,
		"[::1]:x": http.StatusBadRequest, "[::1": http.StatusBadRequest,
		// Nexus would echo a bracketed host that is no IPv6 address into
		// the realm and Locations it hands back.
		"[1::2::3]:8082": http.StatusBadRequest, "[::ffff:1.2.3.4.5]": http.StatusBadRequest, "[v1.x]": http.StatusBadRequest,
		"[::1%25]:8082": http.StatusBadRequest, "[fe80::1%25eth0]": http.StatusBadRequest, "[example.com]:443": http.StatusBadRequest,
		"[::ffff:10.0.0.1]:8082": http.StatusOK, "nexus.example.com:0": http.StatusBadRequest, "[::1]:0": http.StatusBadRequest} {
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.Host = h
		if w := serveOn(p, port, r); w.Code != want {
			t.Errorf("port route, Host %q: status %d, want %d", h, w.Code, want)
		}
	}
}

// A connection's route decides what its requests reach, so a Host for
// another name is refused with 421 (HTTP/2 coalescing under a wildcard
// certificate) unless both names reach the same repositories. Two mirror
// names have no Target and a passthrough name none either: they are told
// apart by the route itself, never served on each other's connection
// with the other's registries.
func TestCoalescedHostMustBelongToTheRoute(t *testing.T) {
	p, _, _ := admitProxy(t)
	tab, err := route.Build(route.Spec{
		Routes:      []string{"team-a.example.com=team-a", "alias.example.com=team-a", "team-b.example.com=team-b"},
		Mirrors:     []string{"mirror-a.example.com/ghcr.io=ghcr-proxy", "mirror-b.example.com/quay.io=quay-proxy"},
		Passthrough: []string{"legacy.example.com=127.0.0.1:9"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		conn, host string
		want       int // 0: admitted
	}{
		{"team-a.example.com", "alias.example.com", 0},
		{"team-a.example.com", "team-b.example.com", http.StatusMisdirectedRequest},
		{"team-a.example.com", "mirror-a.example.com", http.StatusMisdirectedRequest},
		{"mirror-a.example.com", "mirror-a.example.com:443", 0},
		{"mirror-a.example.com", "mirror-b.example.com", http.StatusMisdirectedRequest},
		{"mirror-a.example.com", "legacy.example.com", http.StatusMisdirectedRequest},
		{"mirror-a.example.com", "team-a.example.com", http.StatusMisdirectedRequest},
	} {
		ci := &ConnInfo{Table: tab, Route: tab.LookupHost(c.conn), ServerName: c.conn}
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.Host = c.host
		if status, _, msg := p.admit(ci, r); status != c.want {
			t.Errorf("connection for %s, Host %s: %d %q, want %d", c.conn, c.host, status, msg, c.want)
		}
	}
}

// A request whose client has already gone when nexmux would forward it (an
// HTTP/2 stream reset right after its HEADERS: a rapid-reset flood) is not
// sent to Nexus: each would take a Jetty thread for nothing, the attempt
// outliving the client on purpose (upstream_route.go). Its place is not
// kept either: the next request goes through.
func TestClientGoneBeforeForwardingNeverReachesNexus(t *testing.T) {
	p, ci, reached := admitProxy(t)
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := httptest.NewRequest(http.MethodGet, "https://team-a.example.com/v2/app/manifests/latest", nil).WithContext(ctx)
		r.RequestURI = "/v2/app/manifests/latest"
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		if w := serveOn(p, ci, r); w.Body.Len() != 0 {
			t.Fatalf("answered a client that is gone: %d %q", w.Code, w.Body.String())
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("Nexus reached %d times by requests whose client had gone", n)
	}
	r := httptest.NewRequest(http.MethodGet, "https://team-a.example.com/v2/app/manifests/latest", nil)
	r.RequestURI = "/v2/app/manifests/latest"
	if w := serveOn(p, ci, r); w.Code != http.StatusOK || reached.Load() != 1 {
		t.Fatalf("a live request after them: status %d %q, Nexus reached %d times", w.Code, w.Body.String(), reached.Load())
	}
}

// A port route's connection is the port's whatever name it was opened for
// and its requests carry: legacy clients send Nexus's old host name, which
// may be another route's (mux's portRoute: the port wins over SNI).
func TestPortRouteAdmitsAnyHost(t *testing.T) {
	p, _, _ := admitProxy(t)
	tab, err := route.Build(route.Spec{Routes: []string{"team-b.example.com=team-b"}, Ports: []string{"8082=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ sni, host string }{
		{"team-b.example.com", "team-b.example.com:8082"},
		{"nexus.example.com", "nexus.example.com:8082"},
		{"", "team-b.example.com:8082"},
	} {
		ci := &ConnInfo{Table: tab, Route: tab.LookupPort(8082), ServerName: c.sni, ByPort: true}
		r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		r.Host = c.host
		if status, _, msg := p.admit(ci, r); status != 0 {
			t.Errorf("port route, server name %q, Host %s: %d %q, want admitted", c.sni, c.host, status, msg)
		}
	}
}

// A manifest or blob read with a '/' after its reference is refused, in
// any spelling Jetty decodes to one: "manifest%73" is "manifests" to
// Nexus, whose lenient router would serve the read past a routing rule's
// pattern.
func TestContentReadEndingInSlashRefused(t *testing.T) {
	p, ci, reached := admitProxy(t)
	for _, path := range []string{"/v2/app/manifests/1/", "/v2/app/manifest%73/1/", "/v2/app/blob%73/" + testDigest + "/", "/repository/team-a/v2/app/%6Danifests/1/"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r := httptest.NewRequest(method, "https://team-a.example.com/", nil)
			r.RequestURI = path
			if w := serveOn(p, ci, r); w.Code != http.StatusNotFound {
				t.Errorf("%s %s: %d %q, want 404", method, path, w.Code, w.Body.String())
			}
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("Nexus reached %d times", n)
	}
}

// Where any Host is served (a port route, a connection without SNI), a
// Host that names no host is refused before Nexus: it came back as the
// token realm and the Locations ("https://a,b/v2/token"). Host names in
// any case, with a trailing dot, and addresses pass.
func TestHostMustNameAHost(t *testing.T) {
	p, ci, reached := admitProxy(t)
	port := &ConnInfo{Table: ci.Table, Route: ci.Route, ByPort: true}
	noSNI := &ConnInfo{Table: ci.Table, Route: ci.Route}
	for _, c := range []*ConnInfo{port, noSNI} {
		reached.Store(0)
		for _, h := range []string{"a,b", "a;b=c", "x'y", "a(b)", "a%2fb", "a%40evil.example", "evil.example%2f:8082",
			":8082", "team..example.com", "-a.example.com", "a.example.com..", "*.example.com", "a!b:8082", "~"} {
			r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
			r.Host = h
			if w := serveOn(p, c, r); w.Code != http.StatusBadRequest || errorCode(t, w.Body.String()) != "UNSUPPORTED" {
				t.Errorf("by port %v, Host %q: %d %q, want 400 UNSUPPORTED", c.ByPort, h, w.Code, w.Body.String())
			}
		}
		if n := reached.Load(); n != 0 {
			t.Fatalf("by port %v: Nexus reached %d times", c.ByPort, n)
		}
		for _, h := range []string{"nexus.example.com", "NEXUS.Example.com.:8082", "_svc.example.com", "10.0.0.1:8082", "[2001:db8::1]:8082", "localhost"} {
			r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
			r.Host = h
			if w := serveOn(p, c, r); w.Code != http.StatusOK {
				t.Errorf("by port %v, Host %q: %d %q, want Nexus's 200", c.ByPort, h, w.Code, w.Body.String())
			}
		}
	}
}
