package l7

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// agedProxy serves a Proxy in front of node whose client connections are
// all past --max-conn-age: each answer must end its connection.
func agedProxy(t *testing.T, node string) string {
	t.Helper()
	spec, err := upstream.ParseSpec([]string{"http://" + node}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	up := NewUpstreams(spec, upstream.NewSet(spec, logger), UpstreamOptions{MaxConns: 4})
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	p, err := New(Config{Upstreams: up, Transport: tr, Logger: logger, MaxConnAge: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ln := testnet.Listen(t)
	srv := &http.Server{Handler: p, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		client, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		return NewContext(ctx, &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com",
			Client: client, Opened: time.Now().Add(-time.Hour)})
	}}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Informational answers from Nexus: ReverseProxy forwards every 1xx with
// its headers as Nexus wrote them (a 103's Link naming a node, unrewritten,
// as no final answer's is), then clears the response's header map, which
// dropped the "Connection: close" --max-conn-age (or a reload's revocation)
// had set: the connection outlived its age. Only "100 Continue" means
// anything to a registry client, and it goes without Nexus's headers.
func TestNexusInformationalAnswersStayInside(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(c, "HTTP/1.1 103 Early Hints\r\nLink: <http://%s/repository/team-b/v2/x/blobs/sha256:0>; rel=preload\r\n\r\n"+
			"HTTP/1.1 100 Continue\r\nX-Nexus-Node: %s\r\n\r\n"+
			"HTTP/1.1 102 Processing\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok", node, node)
		return true
	})
	node = n.addr
	addr := agedProxy(t, node)
	for _, h2 := range []bool{false, true} {
		var got []string
		req := teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, fmt.Sprint(code, " ", h))
				return nil
			},
		}))
		tr := &http.Transport{}
		if h2 {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Fatalf("h2 %v: %s %q", h2, resp.Status, b)
		}
		for _, g := range got {
			if !strings.HasPrefix(g, "100 ") || strings.Contains(g, node) {
				t.Errorf("h2 %v: informational answer reached the client: %s", h2, g)
			}
		}
		if !h2 && !resp.Close {
			t.Errorf("answer on a connection past --max-conn-age without Connection: close, after Nexus's 1xx (headers %v)", resp.Header)
		}
	}
}

// An HTTP/1.0 client (ab, a front speaking HTTP/1.0 to its backends, as
// nginx does by default) never gets a 1xx: HTTP/1.0 has none, and RFC 9110
// (15.2) forbids sending one; such a client reads "100 Continue" as the
// final answer and the real one after it as its body. Nexus sends one
// whatever the client's version (it hears HTTP/1.1 from nexmux).
func TestNoInformationalAnswerToAnHTTP10Client(t *testing.T) {
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "PUT /v2/app/manifests/1 HTTP/1.0\r\nHost: team-a.example.com\r\n"+expect+"Content-Length: 2\r\n\r\n{}")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if line, _, _ := strings.Cut(string(b), "\r\n"); !strings.HasPrefix(line, "HTTP/1.0 201 ") && !strings.HasPrefix(line, "HTTP/1.1 201 ") {
			t.Errorf("HTTP/1.0 PUT (%q): first status line %q, want Nexus's 201 (whole answer %q)", strings.TrimSpace(expect), line, b)
		}
	}
}
