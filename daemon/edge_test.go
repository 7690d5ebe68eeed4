package daemon_test

// Edge tests (issue 4): PROXY protocol in, SNI passthrough (raw TCP copy to
// another TLS server, PROXY protocol out), several protocols on one port,
// and one listener per port. Everything runs over real TCP and TLS with
// real clients; helpers carry an "edge" prefix so they do not collide with
// the other test files of this package.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/config"
	"github.com/nexmux/nexmux/daemon"
	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// segmentSize is one Ethernet TCP segment's payload with timestamps: a
// ClientHello larger than this cannot arrive in one packet.
const segmentSize = 1448

// ---------------------------------------------------------------------------
// Shared helpers

// edgeStack starts a stack whose log lines land in the returned buffer.
func edgeStack(t *testing.T, cfg config.Config) (*stack.Stack, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st := stack.Start(t, stack.Options{Config: cfg, Logger: log})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nexmux log:\n%s", logs.String())
		}
	})
	return st, logs
}

// edgeLogLines returns the log lines holding every part.
func edgeLogLines(logs *logBuffer, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(logs.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// edgeWaitLog waits up to five seconds for a log line holding every part
// and returns it.
func edgeWaitLog(t *testing.T, logs *logBuffer, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ls := edgeLogLines(logs, parts...); len(ls) > 0 {
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", parts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// edgeClosed reads from c until it fails and reports what came back. It
// fails the test when c is still open after limit.
func edgeClosed(t *testing.T, c net.Conn, limit time.Duration) (got []byte, elapsed time.Duration) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	got, err := io.ReadAll(c)
	elapsed = time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (read %q)", limit, got)
	}
	return got, elapsed
}

// ---------------------------------------------------------------------------
// PROXY protocol, inbound

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

// edgeGet sends one authenticated GET /v2/ over a new connection and
// returns the status.
func edgeGet(tr *http.Transport, host string) (int, error) {
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
	st, logs := edgeStack(t, cfg)
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
		modes := []ppMode{ppOneWrite, ppSeparate, ppDribble}
		if strings.HasPrefix(h.name, "v1") {
			modes = modes[:2] // see below
		}
		for _, mode := range modes {
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
					status, err := edgeGet(d.transport(st), st.Host("team-a"))
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
						edgeWaitLog(t, logs, "msg=request", "route=team-a.nexmux.test", wantLog)
					}
				}
			})
		}
	}
	if ls := edgeLogLines(logs, "connection refused"); len(ls) > 0 {
		t.Fatalf("connections refused:\n%s", strings.Join(ls, "\n"))
	}

	// A v1 line must arrive in one read: go-proxyproto drops a partial
	// line (slow-loris defence the spec allows, "the sender must always
	// ensure that the header is sent at once"). Real balancers send it in
	// one write; a dribbled one is refused cleanly, never misread.
	for _, name := range []string{"v1", "v1-tcp6"} {
		for _, h := range headers {
			if h.name != name {
				continue
			}
			hdr, _ := h.make(0)
			st.Nexus.ResetRequests()
			d := &ppDialer{header: hdr, mode: ppDribble}
			if status, err := edgeGet(d.transport(st), st.Host("team-a")); err == nil {
				t.Fatalf("%s header one byte per segment: answered %d", name, status)
			}
			edgeWaitLog(t, logs, "reason=proxy_header", "can't read version 1 header")
			if n := len(st.Nexus.Requests()); n != 0 {
				t.Fatalf("Nexus saw %d requests", n)
			}
		}
	}
}

// TestProxyProtocolTrustedPeerWithoutHeader: a peer inside
// --proxy-protocol-from MUST send a header; without one (or with a broken
// one) the connection is refused before anything reaches Nexus.
func TestProxyProtocolTrustedPeerWithoutHeader(t *testing.T) {
	cfg := teamRoutes()
	cfg.ProxyProtocolFrom = []string{"127.0.0.0/8"}
	cfg.HandshakeTimeout = 2 * time.Second
	st, logs := edgeStack(t, cfg)
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
			before := len(edgeLogLines(logs, "reason=proxy_header"))
			status, err := edgeGet(d.transport(st), st.Host("team-a"))
			if err == nil {
				t.Fatalf("request answered %d; want the connection refused", status)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(edgeLogLines(logs, "reason=proxy_header")) <= before {
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

// TestProxyProtocolUntrustedPeer: outside --proxy-protocol-from a header is a
// spoofing attempt and refused; plain clients work and keep their address.
func TestProxyProtocolUntrustedPeer(t *testing.T) {
	cfg := teamRoutes()
	cfg.ProxyProtocolFrom = []string{"192.0.2.0/24"} // not loopback
	st, logs := edgeStack(t, cfg)

	for name, hdr := range map[string][]byte{
		"v2": ppV2(t, "203.0.113.7:5555", st.Addr),
		"v1": []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"),
	} {
		for _, mode := range []ppMode{ppOneWrite, ppSeparate} {
			st.Nexus.ResetRequests()
			before := len(edgeLogLines(logs, "reason=proxy_header"))
			d := &ppDialer{header: hdr, mode: mode}
			if status, err := edgeGet(d.transport(st), st.Host("team-a")); err == nil {
				t.Fatalf("%s header (%v) from an untrusted peer: answered %d, want refused", name, mode, status)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(edgeLogLines(logs, "reason=proxy_header")) <= before {
				if time.Now().After(deadline) {
					t.Fatal("no log line with reason=proxy_header")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if n := len(st.Nexus.Requests()); n != 0 {
				t.Fatalf("Nexus saw %d requests from a refused connection", n)
			}
		}
	}

	// A plain TLS client without a header works and is itself.
	st.Nexus.ResetRequests()
	d := &ppDialer{}
	for i := 0; i < 5; i++ {
		if status, err := edgeGet(d.transport(st), st.Host("team-a")); err != nil || status != http.StatusOK {
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
	st, _ := edgeStack(t, cfg)
	d := &ppDialer{header: ppV2(t, "203.0.113.99:61000", st.Addr), mode: ppOneWrite}
	tr := d.transport(st)
	opts := []remote.Option{
		remote.WithContext(ctxT(t)), remote.WithTransport(tr),
		remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}),
	}
	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	st.Nexus.ResetRequests()
	if err := remote.Write(ref(t, st.Host("team-a-push")+"/pp/app:1"), img, opts...); err != nil {
		t.Fatalf("push: %v", err)
	}
	got, err := remote.Image(ref(t, st.Host("team-a")+"/pp/app:1"), opts...)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatalf("pulled image does not verify: %v", err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		t.Fatalf("digest %s, pushed %s", gd, wd)
	}
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
	st, _ := edgeStack(t, cfg)
	d := &ppDialer{header: ppV2(t, "203.0.113.8:5555", fmt.Sprintf("10.0.0.1:%d", legacy)), mode: ppOneWrite}
	st.Nexus.ResetRequests()
	// nexus.nexmux.test has no SNI route: only the port can route it.
	status, err := edgeGet(d.transport(st), "nexus.nexmux.test:"+strconv.Itoa(st.Port))
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET via the port named in the PROXY header: %d %v", status, err)
	}
	reqs := st.Nexus.Requests()
	if len(reqs) != 1 || reqs[0].Repo != "team-b" || reqs[0].Header.Get("X-Forwarded-For") != "203.0.113.8" {
		t.Fatalf("Nexus saw %+v; want one request for team-b from 203.0.113.8", reqs)
	}
}

// ---------------------------------------------------------------------------
// SNI passthrough

const ptName = "passthrough.nexmux.test"

// ptResult is what the passthrough backend saw on one connection.
type ptResult struct {
	remote   string
	header   *proxyproto.Header
	sni      string
	received int64
	sum      [sha256.Size]byte
	fin      bool // the TCP stream ended (half-close) after close_notify
	err      error
}

// ptBackend is a TLS echo server with its own CA: it echoes every byte,
// and once the client has closed its side (close_notify, then TCP FIN)
// it sends "BYE <bytes> <sha256> fin=<bool>\n" and closes its side.
type ptBackend struct {
	addr    string
	ca      *certs.CA
	results chan ptResult
}

func startPTBackend(t *testing.T, proxyHeader bool) *ptBackend {
	t.Helper()
	ca, err := certs.NewCA("passthrough backend CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(ptName, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &ptBackend{addr: ln.Addr().String(), ca: ca, results: make(chan ptResult, 64)}
	if proxyHeader {
		ln = &proxyproto.Listener{
			Listener:          ln,
			ConnPolicy:        func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil },
			ReadHeaderTimeout: 5 * time.Second,
		}
	}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"echo"}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go b.serve(c.(*tls.Conn))
		}
	}()
	t.Cleanup(func() { tln.Close(); <-done })
	return b
}

func (b *ptBackend) serve(tc *tls.Conn) {
	defer tc.Close()
	var res ptResult
	defer func() {
		select {
		case b.results <- res:
		default:
		}
	}()
	_ = tc.SetDeadline(time.Now().Add(2 * time.Minute))
	if res.err = tc.Handshake(); res.err != nil {
		return
	}
	res.remote = tc.RemoteAddr().String()
	res.sni = tc.ConnectionState().ServerName
	if pc, ok := tc.NetConn().(*proxyproto.Conn); ok {
		res.header = pc.ProxyHeader()
	}
	h := sha256.New()
	res.received, res.err = io.Copy(io.MultiWriter(tc, h), tc)
	if res.err != nil {
		return
	}
	copy(res.sum[:], h.Sum(nil))
	// close_notify arrived; the TCP stream must end too (FIN, not data).
	_ = tc.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := tc.NetConn().Read(make([]byte, 1))
	res.fin = n == 0 && errors.Is(err, io.EOF)
	_ = tc.NetConn().SetReadDeadline(time.Time{})
	if _, res.err = fmt.Fprintf(tc, "BYE %d %x fin=%v\n", res.received, res.sum, res.fin); res.err != nil {
		return
	}
	res.err = tc.CloseWrite()
	if tcp, ok := underlying(tc.NetConn()); ok {
		_ = tcp.CloseWrite()
	}
}

func underlying(c net.Conn) (*net.TCPConn, bool) {
	if pc, ok := c.(*proxyproto.Conn); ok {
		c = pc.Raw()
	}
	tcp, ok := c.(*net.TCPConn)
	return tcp, ok
}

func (b *ptBackend) result(t *testing.T) ptResult {
	t.Helper()
	select {
	case r := <-b.results:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the passthrough backend reported no connection")
		return ptResult{}
	}
}

// ptDial opens a TLS connection for ptName through nexmux at addr, after
// writing hdr (nil: none), verifying the server against pool.
func ptDial(addr string, hdr []byte, pool *x509.CertPool) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var c net.Conn = raw
	if hdr != nil {
		c = &ppConn{Conn: raw, header: hdr, mode: ppOneWrite}
	}
	tc := tls.Client(c, &tls.Config{ServerName: ptName, RootCAs: pool, NextProtos: []string{"echo"}})
	_ = tc.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

// halfClose ends the client's side: close_notify, then TCP FIN.
func halfClose(tc *tls.Conn) error {
	if err := tc.CloseWrite(); err != nil {
		return fmt.Errorf("close_notify: %w", err)
	}
	c := tc.NetConn()
	if pc, ok := c.(*ppConn); ok {
		c = pc.Conn
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return errors.New("no TCP connection under the TLS client")
	}
	if err := tcp.CloseWrite(); err != nil {
		return fmt.Errorf("TCP half-close: %w", err)
	}
	return nil
}

// TestPassthroughEchoLargeHalfClose: the client completes a handshake with
// the backend's own certificate, 32 MiB go each way, and a half-close
// reaches the backend, which still sends its final reply.
func TestPassthroughEchoLargeHalfClose(t *testing.T) {
	be := startPTBackend(t, false)
	cfg := teamRoutes()
	cfg.Passthrough = []string{ptName + "=" + be.addr}
	st, logs := edgeStack(t, cfg)

	// nexmux's CA does not vouch for the backend: the certificate is the
	// backend's, not one nexmux terminated with.
	if _, err := ptDial(st.Addr, nil, st.Pool()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("handshake verified against nexmux's CA: %v; want an unknown-authority error", err)
	}
	if r := be.result(t); r.err == nil {
		t.Fatal("the backend completed a handshake the client refused")
	}

	tc, err := ptDial(st.Addr, nil, be.ca.Pool())
	if err != nil {
		t.Fatalf("handshake through passthrough: %v", err)
	}
	defer tc.Close()
	cs := tc.ConnectionState()
	if cn := cs.PeerCertificates[0].Subject.CommonName; cn != ptName || cs.PeerCertificates[0].Issuer.CommonName != "passthrough backend CA" {
		t.Fatalf("peer certificate %q issued by %q", cn, cs.PeerCertificates[0].Issuer.CommonName)
	}
	if cs.NegotiatedProtocol != "echo" {
		t.Fatalf("ALPN %q, want the backend's echo", cs.NegotiatedProtocol)
	}

	// A small round trip first.
	if _, err := tc.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 5)
	if _, err := io.ReadFull(tc, line); err != nil || string(line) != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}

	const size = 32 << 20
	src := rand.NewChaCha8([32]byte{4, 2})
	sent := sha256.New()
	sent.Write([]byte("ping\n"))
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(tc, sent), io.LimitReader(src, size))
		if err == nil {
			err = halfClose(tc)
		}
		werr <- err
	}()
	got := sha256.New()
	got.Write([]byte("ping\n"))
	if _, err := io.CopyN(got, tc, size); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("sending: %v", err)
	}
	rest, err := io.ReadAll(tc)
	if err != nil {
		t.Fatalf("reading after the half-close: %v (got %q)", err, rest)
	}
	sum := sent.Sum(nil)
	if !bytes.Equal(got.Sum(nil), sum) {
		t.Fatal("the echoed 32 MiB differ from what was sent")
	}
	want := fmt.Sprintf("BYE %d %x fin=true\n", size+5, sum)
	if string(rest) != want {
		t.Fatalf("final reply %q, want %q", rest, want)
	}
	r := be.result(t)
	if r.err != nil || r.received != size+5 || !r.fin || r.sni != ptName {
		t.Fatalf("backend saw %+v", r)
	}
	if ls := edgeLogLines(logs, "connection refused"); len(ls) > 0 {
		t.Fatalf("connections refused:\n%s", strings.Join(ls, "\n"))
	}
}

// TestPassthroughOpenSSL: openssl s_client sees the backend's certificate.
func TestPassthroughOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	be := startPTBackend(t, false)
	cfg := teamRoutes()
	cfg.Passthrough = []string{ptName + "=" + be.addr}
	st, _ := edgeStack(t, cfg)
	caFile := filepath.Join(t.TempDir(), "backend-ca.pem")
	if err := os.WriteFile(caFile, be.ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", st.Addr, "-servername", ptName,
		"-CAfile", caFile, "-verify_return_error")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	subject := regexp.MustCompile(`(?m)^subject=.*CN ?= ?` + regexp.QuoteMeta(ptName) + `\s*$`)
	issuer := regexp.MustCompile(`(?m)^issuer=.*CN ?= ?passthrough backend CA\s*$`)
	if !subject.Match(out) || !issuer.Match(out) || !bytes.Contains(out, []byte("Verify return code: 0 (ok)")) {
		t.Fatalf("openssl did not see the backend's certificate:\n%s", out)
	}
}

// TestPassthroughProxyProtocolOut: with --passthrough-proxy-protocol the
// backend learns the real client address (also when it came in a PROXY
// header from a trusted balancer) and, with v2, the server name.
func TestPassthroughProxyProtocolOut(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		for _, inbound := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/inbound-proxy=%v", version, inbound), func(t *testing.T) {
				be := startPTBackend(t, true)
				cfg := teamRoutes()
				cfg.Passthrough = []string{ptName + "=" + be.addr}
				cfg.PassthroughProxyProtocol = version
				var hdr []byte
				if inbound {
					cfg.ProxyProtocolFrom = []string{"127.0.0.0/8"}
				}
				st, _ := edgeStack(t, cfg)
				dst := st.Addr // what the client connected to
				if inbound {
					dst = "198.51.100.1:443" // the balancer's address
					hdr = ppV2(t, "203.0.113.7:5555", dst)
				}
				tc, err := ptDial(st.Addr, hdr, be.ca.Pool())
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				defer tc.Close()
				client := tc.LocalAddr().String()
				if inbound {
					client = "203.0.113.7:5555"
				}
				if _, err := tc.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				if err := halfClose(tc); err != nil {
					t.Fatal(err)
				}
				rest, err := io.ReadAll(tc)
				if err != nil || !bytes.HasPrefix(rest, []byte("hello")) || !bytes.Contains(rest, []byte("BYE 5 ")) {
					t.Fatalf("reply %q %v", rest, err)
				}
				r := be.result(t)
				if r.err != nil || r.header == nil {
					t.Fatalf("backend: header %v, err %v", r.header, r.err)
				}
				if want := map[string]byte{"v1": 1, "v2": 2}[version]; r.header.Version != want {
					t.Fatalf("PROXY version %d, want %d", r.header.Version, want)
				}
				if r.remote != client || r.header.SourceAddr.String() != client {
					t.Fatalf("backend saw client %s (header %s), want %s", r.remote, r.header.SourceAddr, client)
				}
				if r.header.DestinationAddr.String() != dst {
					t.Fatalf("header destination %s, want %s", r.header.DestinationAddr, dst)
				}
				tlvs, err := r.header.TLVs()
				if err != nil {
					t.Fatal(err)
				}
				var authority []string
				for _, tlv := range tlvs {
					if tlv.Type == proxyproto.PP2_TYPE_AUTHORITY {
						authority = append(authority, string(tlv.Value))
					}
				}
				switch version {
				case "v2":
					if len(authority) != 1 || authority[0] != ptName {
						t.Fatalf("AUTHORITY TLVs %q, want [%q]", authority, ptName)
					}
				case "v1":
					if len(tlvs) != 0 {
						t.Fatalf("v1 header with TLVs %v", tlvs)
					}
				}
			})
		}
	}
}

// TestPassthroughBackendDown: an unreachable backend closes the client's
// connection at once and says why.
func TestPassthroughBackendDown(t *testing.T) {
	dead := freePort(t)
	cfg := teamRoutes()
	cfg.Passthrough = []string{fmt.Sprintf("%s=127.0.0.1:%d", ptName, dead)}
	st, logs := edgeStack(t, cfg)
	start := time.Now()
	raw, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(8 * time.Second))
	err = tls.Client(raw, &tls.Config{ServerName: ptName, InsecureSkipVerify: true}).Handshake()
	if err == nil {
		t.Fatal("handshake with a dead backend succeeded")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("closed after %v", el)
	}
	line := edgeWaitLog(t, logs, "reason=passthrough_dial")
	if !strings.Contains(line, "sni="+ptName) || !strings.Contains(line, fmt.Sprintf("backend=127.0.0.1:%d", dead)) {
		t.Fatalf("log line lacks the name or backend: %s", line)
	}
	// A terminated route on the same listener is unaffected.
	if status := get(st, "team-a", "/v2/"); status != http.StatusUnauthorized {
		t.Fatalf("team-a after a failed passthrough: %d", status)
	}
}

// ---------------------------------------------------------------------------
// One port, several protocols

// TestListenRefusesOtherProtocols: on --listen, bytes that are not a TLS
// ClientHello close the connection within the handshake timeout with one
// log line naming the reason.
func TestListenRefusesOtherProtocols(t *testing.T) {
	cfg := teamRoutes()
	cfg.HandshakeTimeout = time.Second
	st, logs := edgeStack(t, cfg)
	rnd := make([]byte, 512)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	rnd[0] = 0x8f // anything but a handshake record
	cases := []struct {
		name    string
		send    []byte
		reason  string
		minWait time.Duration // the close must not come before this
		alert   bool          // a TLS decode_error alert comes back
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"), "not_tls", 0, false},
		{"ssh", []byte("SSH-2.0-x\r\n"), "not_tls", 0, false},
		{"random", rnd, "not_tls", 0, false},
		{"sslv2-like", []byte{0x16, 0x02, 0x00, 0x00, 0x20, 1, 2, 3}, "not_tls", 0, false},
		{"malformed hello", []byte{0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 1, 2, 3, 4}, "malformed_hello", 0, true},
		{"silent", nil, "timeout", 900 * time.Millisecond, false},
		{"partial hello", []byte{0x16, 0x03, 0x01, 0x06, 0x00, 0x01, 0x00, 0x05}, "timeout", 900 * time.Millisecond, false},
		{"one byte", []byte{0x16}, "timeout", 900 * time.Millisecond, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client := "client=" + c.LocalAddr().String() + " "
			if len(tc.send) > 0 {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			got, elapsed := edgeClosed(t, c, 8*time.Second)
			if elapsed < tc.minWait {
				t.Fatalf("closed after %v, before the handshake timeout", elapsed)
			}
			wantAlert := []byte{21, 3, 3, 0, 2, 2, 50}
			if tc.alert != bytes.Equal(got, wantAlert) || (!tc.alert && len(got) > 0) {
				t.Fatalf("got %x back", got)
			}
			edgeWaitLog(t, logs, client, "reason="+tc.reason)
			if ls := edgeLogLines(logs, client); len(ls) != 1 {
				t.Fatalf("%d log lines for the connection, want 1:\n%s", len(ls), strings.Join(ls, "\n"))
			}
		})
	}
}

// TestPortRoutePlainHTTPAndTLS: a legacy connector port bound by nexmux
// serves plain HTTP and TLS on the same port.
func TestPortRoutePlainHTTPAndTLS(t *testing.T) {
	port := freePort(t)
	cfg := teamRoutes()
	cfg.Port = []string{fmt.Sprintf("%d=team-a", port)}
	cfg.BindPorts = true
	cfg.HandshakeTimeout = time.Second
	st, _ := edgeStack(t, cfg)
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	realm := regexp.MustCompile(`realm="([^"]*)"`)
	check := func(cl *http.Client, url, wantRealmPrefix string) {
		t.Helper()
		resp, err := cl.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		m := realm.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
		if resp.StatusCode != http.StatusUnauthorized || m == nil {
			t.Fatalf("GET %s: %d %q, want 401 with a realm", url, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if !strings.HasPrefix(m[1], wantRealmPrefix+"/") || !strings.HasSuffix(m[1], "/v2/token") {
			t.Fatalf("GET %s: realm %q, want %s/…/v2/token", url, m[1], wantRealmPrefix)
		}
	}
	plain := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	check(plain, "http://"+hostPort+"/v2/", "http://"+hostPort)
	// The same with a hand-written request on a raw connection.
	c, err := net.DialTimeout("tcp", hostPort, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /v2/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", hostPort)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("raw GET /v2/: %v %v", resp, err)
	}
	resp.Body.Close()

	tlsHost := "legacy.nexmux.test:" + strconv.Itoa(port)
	check(&http.Client{Transport: st.Transport(), Timeout: 30 * time.Second}, "https://"+tlsHost+"/v2/", "https://"+tlsHost)
	// And TLS without SNI (an IP-literal client): still the port's route.
	check(&http.Client{Transport: st.Transport(), Timeout: 30 * time.Second}, "https://"+hostPort+"/v2/", "https://"+hostPort)
}

// ---------------------------------------------------------------------------
// Pitfall 8: one listener per port

// TestSecondListenerOnSamePortFails: a second nexmux (or anything) cannot
// bind the address a running one listens on, so handshakes never split
// between two processes; the first keeps serving every connection.
func TestSecondListenerOnSamePortFails(t *testing.T) {
	bound := freePort(t)
	cfg := teamRoutes()
	cfg.Port = []string{fmt.Sprintf("%d=team-a", bound)}
	cfg.BindPorts = true
	st, _ := edgeStack(t, cfg)

	second := func(listen string, bindPorts bool) error {
		c := *st.Runtime.Config
		c.Listen = listen
		c.BindPorts = bindPorts
		b, err := c.Build()
		if err != nil {
			t.Fatalf("config: %v", err)
		}
		d, err := daemon.New(b, daemon.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		err = d.Start()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = d.Shutdown(ctx)
		}
		return err
	}
	port := strconv.Itoa(st.Port)
	for _, tc := range []struct {
		listen    string
		bindPorts bool
		want      string
	}{
		{st.Addr, false, "listen " + st.Addr},
		{":" + port, false, "listen :" + port},
		{"127.0.0.1:0", true, fmt.Sprintf("bind port %d", bound)},
	} {
		err := second(tc.listen, tc.bindPorts)
		if err == nil {
			t.Fatalf("a second daemon bound --listen %s (bind-ports %v)", tc.listen, tc.bindPorts)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("second daemon on %s: %v, want %q and address already in use", tc.listen, err, tc.want)
		}
	}
	edgeReusePortRefused(t, st.Addr)

	// Every handshake still lands on the one listener.
	for i := 0; i < 40; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
			&tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool()})
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		c.Close()
	}
	if status := get(st, "team-a", "/v2/"); status != http.StatusUnauthorized {
		t.Fatalf("GET /v2/ after the failed second start: %d", status)
	}
}
