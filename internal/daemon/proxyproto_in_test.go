package daemon_test

// PROXY protocol in: a trusted load balancer's header gives the client's
// address and may route by its destination port; everyone else must not
// send one.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// ppMode says how the PROXY header and the TLS ClientHello reach nexmux.
type ppMode int

const (
	// ppSeparate: the dialer writes the header, then crypto/tls writes
	// the hello (two writes).
	ppSeparate ppMode = iota
	// ppOneWrite: header and hello leave in one write call, so in one
	// segment on loopback: nexmux's first read holds both.
	ppOneWrite
	// ppDribble: the header one byte per write, then the hello.
	ppDribble
)

func (m ppMode) String() string {
	return [...]string{"separate", "one-write", "dribble"}[m]
}

// ppConn puts a PROXY header in front of the first thing the client writes
// (the ClientHello record) and records that first write.
type ppConn struct {
	net.Conn
	header []byte
	mode   ppMode
	sent   bool
	first  *atomic.Int64 // length of the first client write; nil: not recorded
	tlsRec *atomic.Bool  // the first client write was a TLS handshake record
}

func (c *ppConn) Write(p []byte) (int, error) {
	if c.sent {
		return c.Conn.Write(p)
	}
	c.sent = true
	if c.first != nil {
		c.first.Store(int64(len(p)))
	}
	if c.tlsRec != nil {
		c.tlsRec.Store(len(p) > 5 && p[0] == 0x16 && int(p[3])<<8|int(p[4]) == len(p)-5)
	}
	switch c.mode {
	case ppOneWrite:
		buf := make([]byte, 0, len(c.header)+len(p))
		buf = append(append(buf, c.header...), p...)
		n, err := c.Conn.Write(buf)
		return max(n-len(c.header), 0), err
	case ppDribble:
		for i := range c.header {
			if _, err := c.Conn.Write(c.header[i : i+1]); err != nil {
				return 0, err
			}
			time.Sleep(time.Millisecond)
		}
	}
	return c.Conn.Write(p)
}

// ppDialer dials 127.0.0.1 on the port asked for and sends header (nil:
// none) the way mode says.
type ppDialer struct {
	header []byte
	mode   ppMode
	first  atomic.Int64
	tlsRec atomic.Bool
}

func (d *ppDialer) DialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil || d.header == nil {
		return c, err
	}
	if d.mode == ppSeparate {
		if _, err := c.Write(d.header); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	return &ppConn{Conn: c, header: d.header, mode: d.mode, first: &d.first, tlsRec: &d.tlsRec}, nil
}

// transport returns a client transport of st that dials through d.
func (d *ppDialer) transport(st *stack.Stack) *http.Transport {
	tr := st.Transport()
	tr.DialContext = d.DialContext
	return tr
}

// ppV2 formats a v2 PROXY header from src to dst with tlvs.
func ppV2(t *testing.T, src, dst string, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(mustAddrPort(t, src)), net.TCPAddrFromAddrPort(mustAddrPort(t, dst)))
	if len(tlvs) > 0 {
		if err := h.SetTLVs(tlvs); err != nil {
			t.Fatal(err)
		}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// getV2 sends one authenticated GET /v2/ over a new connection and
// returns the status.
func getV2(tr *http.Transport, host string) (int, error) {
	tr.DisableKeepAlives = true
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/v2/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestProxyProtocolInbound: a trusted load balancer (the test's own
// loopback) puts a PROXY header in front of a large ClientHello, in every
// framing; each of 50 connections per case must route, finish the TLS
// handshake and reach Nexus with the header's client address.
func TestProxyProtocolInbound(t *testing.T) {
	cfg := teamRoutes()
	cfg.ProxyProtocolFrom = []string{"127.0.0.0/8"}
	st, logs := logStack(t, cfg)
	dst := st.Addr

	type header struct {
		name string
		// make returns the header for connection i and the address
		// nexmux must report for it ("" for the socket peer).
		make func(i int) (hdr []byte, client string)
	}
	big := bytes.Repeat([]byte("x"), 600) // pushes a v2 header past go-proxyproto's 256-byte buffer
	headers := []header{
		{"v2", func(i int) ([]byte, string) {
			src := fmt.Sprintf("203.0.113.%d:%d", i%250+1, 40000+i)
			return ppV2(t, src, dst), src
		}},
		{"v1", func(i int) ([]byte, string) {
			src := fmt.Sprintf("203.0.113.%d:%d", i%250+1, 5555+i)
			return []byte(fmt.Sprintf("PROXY TCP4 203.0.113.%d 127.0.0.1 %d 443\r\n", i%250+1, 5555+i)), src
		}},
		{"v2-tlvs", func(i int) ([]byte, string) {
			src := fmt.Sprintf("198.51.100.%d:%d", i%250+1, 1024+i)
			return ppV2(t, src, dst,
				proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("team-a.nexmux.test")},
				proxyproto.TLV{Type: proxyproto.PP2_TYPE_MIN_CUSTOM, Value: big},
				proxyproto.TLV{Type: proxyproto.PP2_TYPE_NOOP, Value: []byte{0, 0, 0}},
			), src
		}},
		{"v2-tcp6", func(i int) ([]byte, string) {
			src := fmt.Sprintf("[2001:db8::%x]:%d", i+1, 2000+i)
			return ppV2(t, src, "[2001:db8::ffff]:443"), src
		}},
		{"v1-tcp6", func(i int) ([]byte, string) {
			src := fmt.Sprintf("[2001:db8::%x]:%d", i+1, 3000+i)
			return []byte(fmt.Sprintf("PROXY TCP6 2001:db8::%x 2001:db8::ffff %d 443\r\n", i+1, 3000+i)), src
		}},
		{"v2-local", func(i int) ([]byte, string) {
			// A health check of the balancer itself: LOCAL carries no
			// address, the socket peer is the client.
			h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
			b, err := h.Format()
			if err != nil {
				t.Fatal(err)
			}
			return b, ""
		}},
	}
	for _, h := range headers {
		// Dribbled one byte a segment, a v1 line is as welcome as a v2
		// header: the spec recommends tolerating partial headers, and
		// balancers behind other proxies, or that flush per field, send
		// them (the handshake timeout bounds the wait).
		for _, mode := range []ppMode{ppOneWrite, ppSeparate, ppDribble} {
			n := 50
			switch {
			case mode == ppDribble:
				n = 3
			case mode == ppSeparate:
				n = 10
			}
			t.Run(h.name+"/"+mode.String(), func(t *testing.T) {
				for i := 0; i < n; i++ {
					hdr, client := h.make(i)
					d := &ppDialer{header: hdr, mode: mode}
					st.Nexus.ResetRequests()
					status, err := getV2(d.transport(st), st.Host("team-a"))
					if err != nil || status != http.StatusOK {
						t.Fatalf("connection %d: status %d, err %v", i, status, err)
					}
					if mode == ppOneWrite {
						if !d.tlsRec.Load() || d.first.Load() <= segmentSize {
							t.Fatalf("the write after the header was %d bytes (TLS record: %v); want one ClientHello record larger than a %d-byte segment",
								d.first.Load(), d.tlsRec.Load(), segmentSize)
						}
					}
					wantIP, wantLog := "127.0.0.1", "client=127.0.0.1:"
					if client != "" {
						ap := mustAddrPort(t, client)
						wantIP, wantLog = ap.Addr().String(), "client="+ap.String()
					}
					reqs := st.Nexus.Requests()
					if len(reqs) != 1 {
						t.Fatalf("connection %d: Nexus saw %d requests, want 1", i, len(reqs))
					}
					if got := reqs[0].Header.Get("X-Forwarded-For"); got != wantIP {
						t.Fatalf("connection %d: X-Forwarded-For %q, want %q", i, got, wantIP)
					}
					if i == 0 || i == n-1 {
						waitLog(t, logs, "msg=request", "route=team-a.nexmux.test", wantLog)
					}
				}
			})
		}
	}
	if ls := logLines(logs, "connection refused"); len(ls) > 0 {
		t.Fatalf("connections refused:\n%s", strings.Join(ls, "\n"))
	}
}

// TestProxyProtocolTrustedPeerWithoutHeader: a peer inside
// --proxy-protocol-from MUST send a header; without one (or with a broken
// one) the connection is refused before anything reaches Nexus.
func TestProxyProtocolTrustedPeerWithoutHeader(t *testing.T) {
	cfg := teamRoutes()
	cfg.ProxyProtocolFrom = []string{"127.0.0.0/8"}
	cfg.HandshakeTimeout = 2 * time.Second
	st, logs := logStack(t, cfg)
	cases := []struct {
		name   string
		header []byte
	}{
		{"no header", nil},
		{"v1 garbage", []byte("PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n")},
		{"v1 without CRLF", []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\n")},
		{"v2 bad version", func() []byte {
			b := ppV2(t, "203.0.113.7:5555", st.Addr)
			b[12] = 0x31 // version 3
			return b
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st.Nexus.ResetRequests()
			d := &ppDialer{header: tc.header, mode: ppOneWrite}
			before := len(logLines(logs, "reason=proxy_header"))
			status, err := getV2(d.transport(st), st.Host("team-a"))
			if err == nil {
				t.Fatalf("request answered %d; want the connection refused", status)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(logLines(logs, "reason=proxy_header")) <= before {
				if time.Now().After(deadline) {
					t.Fatal("no log line with reason=proxy_header")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if n := len(st.Nexus.Requests()); n != 0 {
				t.Fatalf("Nexus saw %d requests", n)
			}
		})
	}
	// The same with a bare TLS client, which sees a closed connection.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
		&tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool()})
	if err == nil {
		c.Close()
		t.Fatal("TLS handshake without a PROXY header succeeded from a trusted peer")
	}
}

// A balancer sending PROXY headers to a nexmux not told to expect them
// (no --proxy-protocol-from) is the usual mistake of setting one up: its
// connections are refused, and the line says a PROXY header came and
// which flag trusts it, not "neither TLS nor plain HTTP" (reason=not_tls).
func TestProxyHeaderWithoutProxyProtocolFromSaysSo(t *testing.T) {
	st, logs := logStack(t, teamRoutes())
	for _, l := range refusedAsProxyHeader(t, st, logs, "without --proxy-protocol-from") {
		if !strings.Contains(l, "--proxy-protocol-from") {
			t.Errorf("the line does not name --proxy-protocol-from: %s", l)
		}
	}
}

// refusedAsProxyHeader sends a v1 and a v2 PROXY header, in the TLS
// client's first write and in one of their own, and returns the
// reason=proxy_header line each refusal logged; Nexus must see nothing.
func refusedAsProxyHeader(t *testing.T, st *stack.Stack, logs *logBuffer, peer string) []string {
	t.Helper()
	var lines []string
	for name, hdr := range map[string][]byte{
		"v2": ppV2(t, "203.0.113.7:5555", st.Addr),
		"v1": []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"),
	} {
		for _, mode := range []ppMode{ppOneWrite, ppSeparate} {
			st.Nexus.ResetRequests()
			before := len(logLines(logs, "reason=proxy_header"))
			d := &ppDialer{header: hdr, mode: mode}
			if status, err := getV2(d.transport(st), st.Host("team-a")); err == nil {
				t.Fatalf("%s header (%v) %s: answered %d, want refused", name, mode, peer, status)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(logLines(logs, "reason=proxy_header")) <= before {
				if time.Now().After(deadline) {
					t.Fatalf("%s header (%v) %s: no line with reason=proxy_header:\n%s", name, mode, peer, strings.Join(logLines(logs, "refused"), "\n"))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if n := len(st.Nexus.Requests()); n != 0 {
				t.Fatalf("%s header (%v) %s: Nexus saw %d requests from a refused connection", name, mode, peer, n)
			}
			l := logLines(logs, "reason=proxy_header")
			lines = append(lines, l[len(l)-1])
		}
	}
	return lines
}

// TestProxyProtocolUntrustedPeer: outside --proxy-protocol-from a header is a
// spoofing attempt and refused; plain clients work and keep their address.
func TestProxyProtocolUntrustedPeer(t *testing.T) {
	cfg := teamRoutes()
	cfg.ProxyProtocolFrom = []string{"192.0.2.0/24"} // not loopback
	st, logs := logStack(t, cfg)
	refusedAsProxyHeader(t, st, logs, "from an untrusted peer")

	// A plain TLS client without a header works and is itself.
	st.Nexus.ResetRequests()
	d := &ppDialer{}
	for i := 0; i < 5; i++ {
		if status, err := getV2(d.transport(st), st.Host("team-a")); err != nil || status != http.StatusOK {
			t.Fatalf("plain client: %d %v", status, err)
		}
	}
	for _, r := range st.Nexus.Requests() {
		if got := r.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Fatalf("X-Forwarded-For %q, want 127.0.0.1", got)
		}
	}
}

// TestProxyProtocolPushPull: go-containerregistry pushes and pulls through
// a balancer that sends a PROXY header and the hello in one segment.
func TestProxyProtocolPushPull(t *testing.T) {
	cfg := teamRoutes()
	cfg.ProxyProtocolFrom = []string{"127.0.0.1"}
	st, _ := logStack(t, cfg)
	d := &ppDialer{header: ppV2(t, "203.0.113.99:61000", st.Addr), mode: ppOneWrite}
	tr := d.transport(st)
	opts := []remote.Option{
		remote.WithContext(ctxT(t)), remote.WithTransport(tr),
		remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}),
	}
	st.Nexus.ResetRequests()
	pushPull(t, st.Host("team-a-push")+"/pp/app:1", st.Host("team-a")+"/pp/app:1", opts...)
	if d.first.Load() <= segmentSize {
		t.Fatalf("ClientHello of %d bytes; want more than a segment", d.first.Load())
	}
	reqs := st.Nexus.Requests()
	if len(reqs) < 10 {
		t.Fatalf("only %d requests reached Nexus", len(reqs))
	}
	for _, r := range reqs {
		if got := r.Header.Get("X-Forwarded-For"); got != "203.0.113.99" {
			t.Fatalf("%s %s: X-Forwarded-For %q, want 203.0.113.99", r.Method, r.Path, got)
		}
	}
}

// TestProxyProtocolDestinationPortRoute: the destination port of a trusted
// header names a legacy port route, which wins over the SNI.
func TestProxyProtocolDestinationPortRoute(t *testing.T) {
	legacy := freePort(t)
	cfg := teamRoutes()
	cfg.ProxyProtocolFrom = []string{"127.0.0.0/8"}
	cfg.Port = []string{fmt.Sprintf("%d=team-b", legacy)}
	st, _ := logStack(t, cfg)
	d := &ppDialer{header: ppV2(t, "203.0.113.8:5555", fmt.Sprintf("10.0.0.1:%d", legacy)), mode: ppOneWrite}
	st.Nexus.ResetRequests()
	// nexus.nexmux.test has no SNI route: only the port can route it.
	status, err := getV2(d.transport(st), "nexus.nexmux.test:"+strconv.Itoa(st.Port))
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET via the port named in the PROXY header: %d %v", status, err)
	}
	reqs := st.Nexus.Requests()
	if len(reqs) != 1 || reqs[0].Repo != "team-b" || reqs[0].Header.Get("X-Forwarded-For") != "203.0.113.8" {
		t.Fatalf("Nexus saw %+v; want one request for team-b from 203.0.113.8", reqs)
	}

	// A v2 LOCAL header names no destination, whatever its address block
	// holds: the spec has the receiver discard the block and use the real
	// endpoints, so its ports route nothing, and the SNI decides.
	local := ppV2(t, "203.0.113.8:5555", fmt.Sprintf("10.0.0.1:%d", legacy))
	local[12] = 0x20 // version 2, LOCAL
	d = &ppDialer{header: local, mode: ppOneWrite}
	st.Nexus.ResetRequests()
	status, err = getV2(d.transport(st), st.Host("team-a"))
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET after a LOCAL header with a port in its address block: %d %v", status, err)
	}
	if reqs := st.Nexus.Requests(); len(reqs) != 1 || reqs[0].Repo != "team-a" {
		t.Fatalf("Nexus saw %+v; want one request for team-a (by SNI), not the LOCAL block's port route", reqs)
	}
}
