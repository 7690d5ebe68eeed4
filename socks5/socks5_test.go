package socks5_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/socks5"
)

// SOCKS5 reply codes (RFC 1928, Section 6).
const (
	replySucceeded      = 0
	replyNotAllowed     = 2
	replyRefused        = 5
	replyCmdUnsupported = 7
)

type config struct {
	spec    route.Spec
	opts    socks5.Options
	backend string // passthrough backend of pt.nexmux.test
	// The router's --max-conns and --max-conns-per-client.
	maxConns, maxConnsPerClient int
	// proxyFrom is the router's --proxy-protocol-from.
	proxyFrom []string
	// ppOut is the router's --passthrough-proxy-protocol (0: none).
	ppOut byte
	// listen is the SOCKS listener's address (default 127.0.0.1:0).
	listen string
	// routerTimeout is the router's handshake, header, idle and
	// passthrough idle timeout (0: its defaults).
	routerTimeout time.Duration
}

// stack is a mux.Server with a SOCKS5 ingress in front, on loopback. The
// HTTP stage answers "<client> <sni> <tls>" with the route in X-Route.
type stack struct {
	socksAddr string
	ca        *certs.CA
	logs      *testnet.Buffer
	ingress   *socks5.Server
	router    *mux.Server
	refused   atomic.Int64 // ReasonDenied
	logins    atomic.Int64 // ReasonAuth
	// overLimit counts the router's refusals by reason.
	overLimit sync.Map // reason -> *atomic.Int64
	shutdown  func()
}

func start(t testing.TB, cfg config) *stack {
	t.Helper()
	ca, err := certs.NewCA("socks5 test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueTLS("*.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mux.NewCerts([]tls.Certificate{cert})
	if err != nil {
		t.Fatal(err)
	}
	cfg.spec.Routes = append(cfg.spec.Routes, "team-a.nexmux.test=team-a")
	if cfg.backend != "" {
		cfg.spec.Passthrough = append(cfg.spec.Passthrough, "pt.nexmux.test="+cfg.backend)
	}
	tab, err := route.Build(cfg.spec)
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{ca: ca, logs: &testnet.Buffer{}}
	log := slog.New(slog.NewTextHandler(st.logs, nil))
	srv, err := mux.New(mux.Options{
		Logger:                 log,
		HandshakeTimeout:       cfg.routerTimeout,
		HeaderTimeout:          cfg.routerTimeout,
		IdleTimeout:            cfg.routerTimeout,
		PassthroughIdleTimeout: cfg.routerTimeout,
		MaxConns:               cfg.maxConns,
		MaxConnsPerClient:      cfg.maxConnsPerClient,
		Refused: func(reason string) {
			n, _ := st.overLimit.LoadOrStore(reason, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ci := l7.FromContext(r.Context())
			w.Header().Set("X-Route", ci.Route.Key)
			fmt.Fprintf(w, "%s %s %v", ci.Client, ci.ServerName, ci.TLS)
		}),
	}, &mux.State{Table: tab, Certs: cs, ProxyProtocol: proxyPolicy(t, cfg.proxyFrom), PassthroughProxyHeader: cfg.ppOut})
	if err != nil {
		t.Fatal(err)
	}
	cfg.opts.Logger = log
	cfg.opts.Refused = func(reason string) {
		switch reason {
		case socks5.ReasonDenied:
			st.refused.Add(1)
		case socks5.ReasonAuth:
			st.logins.Add(1)
		default:
			n, _ := st.overLimit.LoadOrStore(reason, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	}
	if cfg.opts.SNIPorts == nil {
		cfg.opts.SNIPorts = []int{443}
	}
	ingress := socks5.New(srv, cfg.opts)
	st.ingress = ingress
	st.router = srv
	if cfg.listen == "" {
		cfg.listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		t.Fatal(err)
	}
	st.socksAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.ServeHTTPConns() }()
	go func() { defer wg.Done(); serveErr <- ingress.Serve(ln) }()
	var once sync.Once
	st.shutdown = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// As the daemon does: both drain at once.
			done := make(chan error, 1)
			go func() { done <- ingress.Shutdown(ctx) }()
			_ = srv.Shutdown(ctx)
			if err := <-done; err != nil {
				t.Errorf("socks5 Shutdown: %v", err)
			}
			wg.Wait()
			if err := <-serveErr; err != nil {
				t.Errorf("Serve after Shutdown: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		st.shutdown()
		if t.Failed() {
			t.Logf("log:\n%s", st.logs.String())
		}
	})
	return st
}

// refusedFor is how many connections the router refused for reason.
func (st *stack) refusedFor(reason string) int64 {
	n, ok := st.overLimit.Load(reason)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// login is a SOCKS5 username/password (RFC 1929); nil offers no
// authentication.
type login struct{ user, password string }

// connect speaks SOCKS5 by hand: method negotiation, optional login, and
// one request (cmd 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE). It returns the
// reply code and the connection, positioned after the reply.
func connect(t *testing.T, addr string, l *login, cmd byte, host string, port int) (byte, net.Conn, error) {
	t.Helper()
	return connectFrom(t, "127.0.0.1", addr, l, cmd, host, port)
}

// connectFrom is connect from the client address ip (any 127.0.0.0/8
// address on Linux loopback).
func connectFrom(t *testing.T, ip, addr string, l *login, cmd byte, host string, port int) (byte, net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return handshake(c, l, cmd, host, port)
}

// handshake runs a SOCKS5 login (l nil: none offered) and request on c.
// An IPv4 literal goes as an address (ATYP 1), anything else as a name.
func handshake(c net.Conn, l *login, cmd byte, host string, port int) (byte, net.Conn, error) {
	atyp := byte(atypName)
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		atyp = atypIPv4
	}
	return handshakeAs(c, l, cmd, atyp, host, port)
}

// SOCKS5 address types (RFC 1928, Section 5).
const (
	atypIPv4 = 1
	atypName = 3
	atypIPv6 = 4
)

// handshakeAs is handshake with the request's address type chosen.
func handshakeAs(c net.Conn, l *login, cmd, atyp byte, host string, port int) (byte, net.Conn, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	method := byte(0)
	if l != nil {
		method = 2
	}
	if _, err := c.Write([]byte{5, 1, method}); err != nil {
		return 0, c, err
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		return 0, c, fmt.Errorf("method reply: %w", err)
	}
	if m[1] != method {
		return 0, c, fmt.Errorf("method %#x refused (%#x)", method, m[1])
	}
	if l != nil {
		msg := append([]byte{1, byte(len(l.user))}, l.user...)
		msg = append(append(msg, byte(len(l.password))), l.password...)
		if _, err := c.Write(msg); err != nil {
			return 0, c, err
		}
		if _, err := io.ReadFull(c, m[:]); err != nil {
			return 0, c, fmt.Errorf("login reply: %w", err)
		}
		if m[1] != 0 {
			return 0, c, fmt.Errorf("login refused (%#x)", m[1])
		}
	}
	req := []byte{5, cmd, 0, atyp}
	switch atyp {
	case atypIPv4:
		req = append(req, net.ParseIP(host).To4()...)
	case atypIPv6:
		req = append(req, net.ParseIP(host).To16()...)
	default:
		req = append(append(req, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return 0, c, err
	}
	var rep [4 + 16 + 2]byte
	if _, err := io.ReadFull(c, rep[:4]); err != nil {
		return 0, c, fmt.Errorf("reply: %w", err)
	}
	// The bound address: IPv4, or IPv6 on an IPv6 listener.
	n := map[byte]int{atypIPv4: 4, atypIPv6: 16}[rep[3]]
	if n == 0 {
		return 0, c, fmt.Errorf("reply address type %d", rep[3])
	}
	if _, err := io.ReadFull(c, rep[4:4+n+2]); err != nil {
		return 0, c, fmt.Errorf("reply: %w", err)
	}
	return rep[1], c, nil
}

// get sends one HTTP/1.1 request over c; it returns the body and route.
func get(t *testing.T, c net.Conn) (body, route string) {
	t.Helper()
	if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), resp.Header.Get("X-Route")
}

// A CONNECT is routed as a direct connection would be: a route name on
// the TLS port by SNI, a port with a port route by port (whatever the
// host), an IP literal to the default route. The HTTP stage sees the SOCKS
// client's own address.
func TestConnectRoutesLikeADirectConnection(t *testing.T) {
	st := start(t, config{spec: route.Spec{Ports: []string{"8082=team-p"}, Default: "fallback"}})
	for _, tc := range []struct {
		name      string
		host      string
		port      int
		tls       *tls.Config
		wantSNI   string
		wantRoute string
	}{
		{"route name on 443", "team-a.nexmux.test", 443, &tls.Config{ServerName: "team-a.nexmux.test"}, "team-a.nexmux.test true", "team-a.nexmux.test"},
		{"port route, TLS", "nexus.example.com", 8082, &tls.Config{ServerName: "team-a.nexmux.test"}, "team-a.nexmux.test true", ":8082"},
		{"port route, plain HTTP", "10.0.0.1", 8082, nil, " false", ":8082"},
		// No server name, as a client that dialled an address sends.
		{"IP literal to the default route", "127.0.0.1", 443, &tls.Config{InsecureSkipVerify: true}, " true", "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, c, err := connect(t, st.socksAddr, nil, 1, tc.host, tc.port)
			if err != nil || code != replySucceeded {
				t.Fatalf("CONNECT %s:%d: reply %d, %v", tc.host, tc.port, code, err)
			}
			conn := c
			if tc.tls != nil {
				tc.tls.RootCAs = st.ca.Pool()
				conn = tls.Client(c, tc.tls)
			}
			body, rt := get(t, conn)
			if want := c.LocalAddr().String() + " " + tc.wantSNI; body != want || rt != tc.wantRoute {
				t.Fatalf("got %q from route %q, want %q from %q", body, rt, want, tc.wantRoute)
			}
		})
	}
}

// An IP literal is one destination however the client sends it: as an
// address (ATYP 1 or 4) or as a name (ATYP 3; clients that leave every
// name to the proxy do). Both reach the default route where there is one,
// as a direct connection to that address would, and both are refused
// where there is none.
func TestIPLiteralAsNameRoutesLikeAnAddress(t *testing.T) {
	for _, def := range []string{"fallback", ""} {
		st := start(t, config{spec: route.Spec{Default: def}})
		for _, tc := range []struct {
			host string
			atyp byte
		}{
			{"127.0.0.1", atypIPv4},
			{"127.0.0.1", atypName},
			{"::1", atypIPv6},
			{"::1", atypName},
		} {
			c, err := net.Dial("tcp", st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			code, _, err := handshakeAs(c, nil, 1, tc.atyp, tc.host, 443)
			c.Close()
			want := byte(replySucceeded)
			if def == "" {
				want = replyNotAllowed
			}
			if err != nil || code != want {
				t.Errorf("default route %q, CONNECT %s (ATYP %d): reply %d, %v; want %d", def, tc.host, tc.atyp, code, err, want)
			}
		}
		// On a port with neither SNI routing nor a port route an IP
		// literal is no destination, default route or not.
		for _, atyp := range []byte{atypIPv4, atypName} {
			c, err := net.Dial("tcp", st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			code, _, err := handshakeAs(c, nil, 1, atyp, "127.0.0.1", 22)
			c.Close()
			if err != nil || code != replyNotAllowed {
				t.Errorf("default route %q, CONNECT 127.0.0.1:22 (ATYP %d): reply %d, %v; want %d", def, atyp, code, err, replyNotAllowed)
			}
		}
	}
}

// An IPv6 literal sent as a name in brackets, as a URL writes it ("[::1]",
// ATYP 3), is the address it spells: it reaches the default route where
// ATYP 4 ::1 does, is refused where that is, and the refusal names it
// [::1]:443, as any CONNECT to ::1 is written. Brackets around anything
// else are no host name and no address.
func TestBracketedIPv6AsNameRoutesLikeTheAddress(t *testing.T) {
	for _, def := range []string{"fallback", ""} {
		st := start(t, config{spec: route.Spec{Default: def}})
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		code, _, err := handshakeAs(c, nil, 1, atypName, "[::1]", 443)
		c.Close()
		want := byte(replySucceeded)
		if def == "" {
			want = replyNotAllowed
		}
		if err != nil || code != want {
			t.Errorf("default route %q, CONNECT [::1] (ATYP 3): reply %d, %v; want %d", def, code, err, want)
		}
		if def == "" && (!strings.Contains(st.logs.String(), "connect=[::1]:443 ") || strings.Contains(st.logs.String(), "[[")) {
			t.Errorf("refusal not logged as connect=[::1]:443:\n%s", st.logs.String())
		}
		for _, host := range []string{"[127.0.0.1]", "[team-a.nexmux.test]", "[::1", "[]"} {
			if code, _, err := connect(t, st.socksAddr, nil, 1, host, 443); err != nil || code != replyNotAllowed {
				t.Errorf("default route %q, CONNECT %s:443: reply %d, %v; want %d", def, host, code, err, replyNotAllowed)
			}
		}
	}
}

// An empty name is no destination: it is refused even where an IP literal
// would reach the default route, and the line says what was asked for.
func TestEmptyNameRefused(t *testing.T) {
	st := start(t, config{spec: route.Spec{Default: "fallback"}})
	code, _, err := connect(t, st.socksAddr, nil, 1, "", 443)
	if err != nil || code != replyNotAllowed {
		t.Fatalf("CONNECT with an empty name: reply %d, %v; want %d", code, err, replyNotAllowed)
	}
	if !strings.Contains(st.logs.String(), "connect=:443 ") || strings.Contains(st.logs.String(), "<nil>") {
		t.Fatalf("refusal not logged as asked for:\n%s", st.logs.String())
	}
}

// Nothing outside the route table is reachable: nexmux neither resolves
// nor dials the target, refuses it with "not allowed by ruleset", and logs
// and counts the refusal. BIND and UDP ASSOCIATE are not supported.
func TestRefusesEverythingOutsideTheTable(t *testing.T) {
	port, hits := testnet.Sentinel(t)
	st := start(t, config{})
	refusals := []struct {
		host string
		port int
	}{
		{"127.0.0.1", port},
		{"localhost", port},
		{"evil.example.com", 443},
		{"team-a.nexmux.test", port}, // a route name, but not the TLS port
		{"127.0.0.1", 443},           // IP literal without a default route
		{"team-a.nexmux.test.evil.example", 443},
	}
	for _, tc := range refusals {
		code, _, err := connect(t, st.socksAddr, nil, 1, tc.host, tc.port)
		if err != nil || code != replyNotAllowed {
			t.Errorf("CONNECT %s:%d: reply %d, %v; want %d", tc.host, tc.port, code, err, replyNotAllowed)
		}
	}
	for _, cmd := range []byte{2, 3, 9} { // BIND, UDP ASSOCIATE, and a command SOCKS5 does not define
		code, c, err := connect(t, st.socksAddr, nil, cmd, "team-a.nexmux.test", 443)
		if err != nil || code != replyCmdUnsupported {
			t.Errorf("command %d: reply %d, %v; want %d", cmd, code, err, replyCmdUnsupported)
		}
		// Refused like a CONNECT outside the table: one line with its
		// reason, counted. The library ends such a session without an
		// error, so nothing else logged it.
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("command %d: session not closed after the reply: %v", cmd, err)
		}
		line := fmt.Sprintf("client=%s command=%s reason=%s", c.LocalAddr(), map[byte]string{2: "bind", 3: "udp_associate", 9: "9"}[cmd], socks5.ReasonDenied)
		// An undefined command's line comes once the library returns,
		// after it closed the session: wait for it.
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(st.logs.String(), line) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if n := len(regexp.MustCompile(`client=`+regexp.QuoteMeta(c.LocalAddr().String())+`(\s|$)`).FindAllString(st.logs.String(), -1)); n != 1 || !strings.Contains(st.logs.String(), line) {
			t.Errorf("command %d: %d lines name the client, want one with %q:\n%s", cmd, n, line, st.logs.String())
		}
	}
	if n := st.refused.Load(); n != int64(len(refusals)+3) {
		t.Errorf("%d refusals counted, want %d", n, len(refusals)+3)
	}
	// The line names the destination as the client asked for it: the IP
	// literal, or the name (not the resolver's placeholder address).
	for _, want := range []string{fmt.Sprintf("connect=127.0.0.1:%d", port), fmt.Sprintf("connect=localhost:%d", port), "connect=evil.example.com:443"} {
		if !strings.Contains(st.logs.String(), want+" ") {
			t.Errorf("no refusal line with %s:\n%s", want, st.logs.String())
		}
	}
	if !strings.Contains(st.logs.String(), "reason="+socks5.ReasonDenied) || strings.Contains(st.logs.String(), "connect=0.0.0.0") {
		t.Errorf("refusals not logged as asked for:\n%s", st.logs.String())
	}
	st.shutdown()
	if n := hits.Load(); n != 0 {
		t.Fatalf("the sentinel saw %d connections", n)
	}
}

// A route name with a port behind it is no route name: a host name holds
// no colon (the route table drops ":port", as Host headers carry one).
func TestNameWithPortRefused(t *testing.T) {
	st := start(t, config{})
	for _, host := range []string{"team-a.nexmux.test:8443", "team-a.nexmux.test:", "TEAM-A.nexmux.test.:443"} {
		code, _, err := connect(t, st.socksAddr, nil, 1, host, 443)
		if err != nil || code != replyNotAllowed {
			t.Errorf("CONNECT %s:443: reply %d, %v; want %d", host, code, err, replyNotAllowed)
		}
	}
}

// Each refusal is one line, and a stream nexmux ends itself none: the
// library's own error after either (the rule set's refusal, the closed
// client after the routed side ended) is not logged again.
func TestOneLinePerRefusal(t *testing.T) {
	st := start(t, config{spec: route.Spec{Ports: []string{"8082=team-p"}}})
	lines := func(c net.Conn) int {
		// The session logs before it closes the client; give a line
		// written after that a moment to show.
		time.Sleep(200 * time.Millisecond)
		return len(regexp.MustCompile(`client=`+regexp.QuoteMeta(c.LocalAddr().String())+`(\s|$)`).FindAllString(st.logs.String(), -1))
	}
	code, c, err := connect(t, st.socksAddr, nil, 1, "evil.example.com", 443)
	if err != nil || code != replyNotAllowed {
		t.Fatalf("CONNECT outside the table: reply %d, %v", code, err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("refused session not closed: %v", err)
	}
	if n := lines(c); n != 1 {
		t.Errorf("CONNECT outside the table: %d lines, want 1:\n%s", n, st.logs.String())
	}

	// A stream the router refuses (a malformed hello): its line only.
	code, c, err = connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	_, _ = c.Write([]byte{0x16, 3, 1, 0, 5, 2, 0, 0, 1, 0})
	_, _ = io.Copy(io.Discard, c)
	if n := lines(c); n != 1 || !strings.Contains(st.logs.String(), "reason="+mux.ReasonMalformed) {
		t.Errorf("stream refused by the router: %d lines, want its refusal only:\n%s", n, st.logs.String())
	}

	// A stream served and ended by the routed side: no line.
	code, c, err = connect(t, st.socksAddr, nil, 1, "nexus", 8082)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	if body, _ := get(t, c); body == "" {
		t.Fatal("no answer through the stream")
	}
	_, _ = io.Copy(io.Discard, c)
	if n := lines(c); n != 0 {
		t.Errorf("stream ended by the routed side: %d lines, want none:\n%s", n, st.logs.String())
	}

	// A login refused by the throttle: its line only, not the library's
	// "Failed to authenticate" too.
	users := start(t, config{opts: socks5.Options{Users: func() map[string]string { return map[string]string{"ci": "s3cret"} }}})
	for range 5 {
		if _, _, err := connect(t, users.socksAddr, &login{"ci", "guess"}, 1, "team-a.nexmux.test", 443); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	_, c, err = connect(t, users.socksAddr, &login{"ci", "s3cret"}, 1, "team-a.nexmux.test", 443)
	if err == nil {
		t.Fatal("throttled client logged in")
	}
	time.Sleep(200 * time.Millisecond)
	re := regexp.MustCompile(`.*client=` + regexp.QuoteMeta(c.LocalAddr().String()) + `(\s.*)?\n`)
	if got := re.FindAllString(users.logs.String(), -1); len(got) != 1 || !strings.Contains(got[0], "too many failed logins") {
		t.Errorf("throttled login: lines %q, want the throttle's only:\n%s", got, users.logs.String())
	}
}

// With Users set, only a current user gets in: Users is asked at each
// login, so dropping a user locks them out of the next connection.
func TestLogin(t *testing.T) {
	var users atomic.Pointer[map[string]string]
	users.Store(&map[string]string{"ci": "s3cret", "bob": "two"})
	st := start(t, config{opts: socks5.Options{Users: func() map[string]string { return *users.Load() }}})
	ok := func(l *login) error {
		code, _, err := connect(t, st.socksAddr, l, 1, "team-a.nexmux.test", 443)
		if err == nil && code != replySucceeded {
			err = fmt.Errorf("reply %d", code)
		}
		return err
	}
	if err := ok(&login{"ci", "s3cret"}); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := ok(&login{"ci", "wrong"}); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := ok(nil); err == nil {
		t.Fatal("no login accepted")
	}
	// Both are refusals: a line with the reason each, counted. The client
	// offering no login has its refusal before the server logs and counts
	// it: wait for both.
	for deadline := time.Now().Add(5 * time.Second); st.logins.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	for _, want := range []string{`msg="socks5: login refused: wrong user or password" client=`, `msg="socks5: login refused: the client offers no username/password login" client=`} {
		if !regexp.MustCompile(regexp.QuoteMeta(want) + `\S+ (user=ci )?reason=` + socks5.ReasonAuth + `\n`).MatchString(st.logs.String()) {
			t.Errorf("no line %q ... reason=%s:\n%s", want, socks5.ReasonAuth, st.logs.String())
		}
	}
	if strings.Contains(st.logs.String(), "Failed to authenticate") {
		t.Errorf("the library's own text logged too:\n%s", st.logs.String())
	}
	if n := st.logins.Load(); n != 2 {
		t.Errorf("%d failed logins counted, want 2", n)
	}
	if err := ok(&login{"bob", "two"}); err != nil {
		t.Fatalf("bob before revocation: %v", err)
	}
	users.Store(&map[string]string{"ci": "s3cret"})
	if err := ok(&login{"bob", "two"}); err == nil {
		t.Fatal("bob still gets in after revocation")
	}
	// A user the file does not name has no password, not an empty one:
	// the login itself is refused (and counted by the throttle, which a
	// login taken would clear), not only its CONNECT.
	if err := ok(&login{"bob", ""}); err == nil || !strings.Contains(err.Error(), "login refused") {
		t.Fatalf("a user the file does not name, with an empty password: %v; want the login refused", err)
	}
}

// A reload that revokes a user between its client's login and its CONNECT
// (Revoke sees only clients that made their CONNECT) refuses the CONNECT:
// the revoked user gets no tunnel.
func TestUserRevokedBetweenLoginAndConnect(t *testing.T) {
	var users atomic.Pointer[map[string]string]
	users.Store(&map[string]string{"ci": "s3cret", "bob": "two"})
	st := start(t, config{opts: socks5.Options{Users: func() map[string]string { return *users.Load() }}})
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b [10]byte
	login := append([]byte{5, 1, 2, 1, 2}, "ci"...)
	login = append(append(login, 6), "s3cret"...)
	if _, err := c.Write(login); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil || b[1] != 2 || b[3] != 0 {
		t.Fatalf("login: %v %v", b[:4], err)
	}
	// The reload, as the daemon runs it: the new users, then Revoke.
	users.Store(&map[string]string{"bob": "two"})
	st.ingress.Revoke(*users.Load())

	req := append([]byte{5, 1, 0, 3, byte(len("team-a.nexmux.test"))}, "team-a.nexmux.test"...)
	if _, err := c.Write(binary.BigEndian.AppendUint16(req, 443)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:]); err == nil && b[1] == replySucceeded {
		t.Fatal("CONNECT of a revoked user succeeded")
	}
	if !strings.Contains(st.logs.String(), "reason="+socks5.ReasonDenied) {
		t.Errorf("refusal not logged:\n%s", st.logs.String())
	}
}

// A client that says nothing is cut at the handshake deadline; an
// established stream that carries nothing, at the idle timeout.
func TestDeadlines(t *testing.T) {
	st := start(t, config{
		spec: route.Spec{Ports: []string{"8082=team-p"}},
		opts: socks5.Options{HandshakeTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond},
	})
	closedByServer := func(t *testing.T, c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || n != 0 || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("read %d, %v; want the server to close the connection", n, err)
		}
	}
	t.Run("silent client", func(t *testing.T) {
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		closedByServer(t, c)
	})
	t.Run("idle stream", func(t *testing.T) {
		// Past the handshake deadline first: the idle timeout replaces it.
		code, c, err := connect(t, st.socksAddr, nil, 1, "nexus", 8082)
		if err != nil || code != replySucceeded {
			t.Fatalf("CONNECT: reply %d, %v", code, err)
		}
		closedByServer(t, c)
	})
}

// backendOnce is a passthrough backend that serves one connection with
// serve (10 s deadline) and sends what serve returns on got.
func backendOnce(t *testing.T, serve func(c net.Conn) []byte) (net.Listener, <-chan []byte) {
	t.Helper()
	be, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := be.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		got <- serve(c)
	}()
	return be, got
}

// The SOCKS client's half-close reaches a passthrough backend, whose
// answer still comes back, then the end of the stream.
func TestPassthroughHalfClose(t *testing.T) {
	be, got := backendOnce(t, func(c net.Conn) []byte {
		b, _ := io.ReadAll(c) // until the client's half-close arrives
		_, _ = c.Write([]byte("bye"))
		return b
	})
	st := start(t, config{backend: be.Addr().String()})
	code, c, err := connect(t, st.socksAddr, nil, 1, "pt.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	sent := append(testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"}), "after the hello"...)
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "bye" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	if b := <-got; !bytes.Equal(b, sent) {
		t.Fatalf("backend got %d bytes, want the %d sent", len(b), len(sent))
	}
}

// The PROXY header a passthrough backend gets for a SOCKS stream names the
// client and the address it reached nexmux at, as for a direct connection:
// the socket's own address (or its balancer's header's destination), not
// the listener's, which may be a wildcard (then "::", which also turned an
// IPv4 client into an IPv4-mapped IPv6 one).
func TestPassthroughProxyHeaderOut(t *testing.T) {
	for _, viaBalancer := range []bool{false, true} {
		t.Run(fmt.Sprintf("behind a balancer %v", viaBalancer), func(t *testing.T) {
			be, got := backendOnce(t, func(c net.Conn) []byte {
				h, err := proxyproto.Read(bufio.NewReader(c))
				if err != nil {
					return []byte(err.Error())
				}
				return []byte(fmt.Sprintf("%v %s %s", h.TransportProtocol == proxyproto.TCPv4, h.SourceAddr, h.DestinationAddr))
			})
			cfg := config{backend: be.Addr().String(), ppOut: 2, listen: ":0"}
			if viaBalancer {
				cfg.proxyFrom = []string{"127.0.0.1/32"}
			}
			st := start(t, cfg)
			var c net.Conn
			var want string
			if viaBalancer {
				c = dialVia(t, st, 1)
				want = "true 203.0.113.7:5555 10.0.0.1:1080"
			} else {
				c = dialVia(t, st, 0)
				want = fmt.Sprintf("true %s %s", c.LocalAddr(), c.RemoteAddr())
			}
			code, _, err := handshake(c, nil, 1, "pt.nexmux.test", 443)
			if err != nil || code != replySucceeded {
				t.Fatalf("CONNECT: reply %d, %v", code, err)
			}
			if _, err := c.Write(testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})); err != nil {
				t.Fatal(err)
			}
			if b := string(<-got); b != want {
				t.Fatalf("backend's PROXY header: TCP4, source, destination %q; want %q", b, want)
			}
		})
	}
}

// A passthrough backend's half-close reaches the SOCKS client as EOF, and
// what the client sends after it still reaches the backend, as on a direct
// connection: the tunnel is not torn down at the backend's EOF.
func TestPassthroughHalfCloseFromBackend(t *testing.T) {
	for _, viaBalancer := range []bool{false, true} {
		t.Run(fmt.Sprintf("behind a balancer %v", viaBalancer), func(t *testing.T) { halfCloseFromBackend(t, viaBalancer) })
	}
}

// halfCloseFromBackend runs TestPassthroughHalfCloseFromBackend with the
// client connecting directly, or through a balancer's PROXY header.
func halfCloseFromBackend(t *testing.T, viaBalancer bool) {
	be, got := backendOnce(t, func(c net.Conn) []byte {
		_, _ = c.Write([]byte("bye"))
		_ = c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c) // the hello, then what came after the half-close
		return b
	})
	cfg := config{backend: be.Addr().String()}
	if viaBalancer {
		cfg.proxyFrom = []string{"127.0.0.1/32"}
	}
	st := start(t, cfg)
	var version byte
	if viaBalancer {
		version = 2
	}
	c := dialVia(t, st, version)
	code, _, err := handshake(c, nil, 1, "pt.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "bye" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	if _, err := c.Write([]byte("after the backend's EOF")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if b := <-got; string(b) != string(hello)+"after the backend's EOF" {
		t.Fatalf("backend got %d bytes %q, want the hello and what came after its half-close", len(b), b[min(len(b), len(hello)):])
	}
}

// refusedInSOCKS checks that c got a failure reply and then nothing: the
// stream is closed and no byte of a routed connection follows.
func refusedInSOCKS(t *testing.T, code byte, c net.Conn, err error) {
	t.Helper()
	if err != nil || code != replyRefused {
		t.Fatalf("CONNECT over the limit: reply %d, %v; want %d (connection refused)", code, err, replyRefused)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
		t.Fatalf("after the refusal: %q, %v; want the end of the stream", b, err)
	}
}

// tlsGet speaks TLS to team-a over an established CONNECT stream.
func tlsGet(t *testing.T, st *stack, c net.Conn) string {
	t.Helper()
	tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
	body, rt := get(t, tc)
	if rt != "team-a.nexmux.test" {
		t.Fatalf("got %q from route %q", body, rt)
	}
	return body
}

// socksClient is Go's own SOCKS5 client (net/http's socks5:// proxy).
func socksClient(st *stack) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             http.ProxyURL(&url.URL{Scheme: "socks5", Host: st.socksAddr}),
			TLSClientConfig:   &tls.Config{RootCAs: st.ca.Pool()},
			DisableKeepAlives: true,
		},
		Timeout: 10 * time.Second,
	}
}

// A CONNECT beyond --max-conns is refused in SOCKS itself, "connection
// refused", and never answered "succeeded"; the refusal is counted and
// logged as mux's max_conns. Streams under the limit work end to end, and
// a closed stream's places (two: mux.Server.Admit) come back exactly once.
// With three places, a stream holds two and the next session the third,
// which its CONNECT's second place does not fit beside.
func TestConnectOverMaxConns(t *testing.T) {
	st := start(t, config{maxConns: 3})
	held := holdThenRefused(t, st, mux.ReasonMaxConns)
	// A real client sees the refusal as such.
	_, err := socksClient(st).Get("https://team-a.nexmux.test/v2/")
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Go's SOCKS5 client over the limit: %v, want connection refused", err)
	}
	if n := st.refusedFor(mux.ReasonMaxConns); n != 2 {
		t.Errorf("%d max_conns refusals counted, want 2", n)
	}
	logs := st.logs.String()
	if !strings.Contains(logs, "too many connections") || !strings.Contains(logs, "reason="+mux.ReasonMaxConns) {
		t.Errorf("no max_conns line:\n%s", logs)
	}
	if strings.Contains(logs, "socks5: Connect to") {
		t.Errorf("a second line per refusal (the max_conns line is rate-limited):\n%s", logs)
	}
	// The stream admitted before the refusals is whole.
	if body := tlsGet(t, st, held); !strings.HasPrefix(body, held.LocalAddr().String()+" ") {
		t.Fatalf("held stream: %q", body)
	}
	held.Close()

	// Its place comes back once the stream has ended: Go's client gets
	// through again...
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := socksClient(st).Get("https://team-a.nexmux.test/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.Header.Get("X-Route") != "team-a.nexmux.test" {
				t.Fatalf("route %q", resp.Header.Get("X-Route"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SOCKS5 stream once the held one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ...and exactly one stream's places: with one stream open, the next
	// is refused.
	var code byte
	for {
		code, held, err = connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
		if err == nil && code == replySucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CONNECT after the streams closed: reply %d, %v", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, c, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	refusedInSOCKS(t, code, c, err)
	tlsGet(t, st, held)
}

// --max-conns-per-client counts a SOCKS client's streams by the SOCKS
// client's address: its next CONNECT is refused in SOCKS, another client's
// is not, and the admitted stream is not counted twice by routing.
func TestConnectOverMaxConnsPerClient(t *testing.T) {
	st := start(t, config{maxConnsPerClient: 1})
	held := holdThenRefused(t, st, mux.ReasonPerClient)
	line := ""
	for _, l := range strings.Split(st.logs.String(), "\n") {
		if strings.Contains(l, "reason="+mux.ReasonPerClient) {
			line = l
		}
	}
	if !strings.Contains(line, "client=127.0.0.1:") || !strings.Contains(line, "--max-conns-per-client") {
		t.Errorf("no per-client refusal line for 127.0.0.1:\n%s", st.logs.String())
	}
	code, other, err := connectFrom(t, "127.0.0.2", st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("another client's CONNECT: reply %d, %v", code, err)
	}
	if body := tlsGet(t, st, other); !strings.HasPrefix(body, "127.0.0.2:") {
		t.Fatalf("other client: %q", body)
	}
	if body := tlsGet(t, st, held); !strings.HasPrefix(body, held.LocalAddr().String()+" ") {
		t.Fatalf("held stream: %q", body)
	}
	if n := st.refusedFor(mux.ReasonPerClient); n != 1 {
		t.Errorf("%d max_conns_per_client refusals counted, want only the one", n)
	}
}

// holdThenRefused opens one CONNECT that fills the limit and returns it
// held open; a second one from the same client must be refused in SOCKS
// and counted once with reason.
func holdThenRefused(t *testing.T, st *stack, reason string) net.Conn {
	t.Helper()
	code, held, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT under the limit: reply %d, %v", code, err)
	}
	code, c, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	refusedInSOCKS(t, code, c, err)
	if n := st.refusedFor(reason); n != 1 {
		t.Errorf("%d %s refusals counted, want 1", n, reason)
	}
	return held
}

// Sessions that carry no stream yet count against MaxPendingPerClient from
// accept: one address's silent sockets beyond it are closed at once, while
// another address still gets through; a session whose stream is routed
// counts no more (the router's limits take over).
func TestPendingSessionsCappedPerClient(t *testing.T) {
	st := start(t, config{opts: socks5.Options{MaxPendingPerClient: 2}})
	var silent []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	// Until one is closed (up to 5 s: a loaded machine may take that long
	// to accept and close it, well within the handshake timeout that would
	// close the others), and 200 ms at least, for one closed too many to
	// show.
	start := time.Now()
	isClosed := make([]bool, len(silent))
	closed := 0
	for closed < 1 && time.Since(start) < 5*time.Second || time.Since(start) < 200*time.Millisecond {
		for i, c := range silent {
			if isClosed[i] {
				continue
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err == io.EOF || isReset(err) {
				isClosed[i] = true
				closed++
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if closed != 1 {
		t.Fatalf("%d of 3 silent SOCKS sessions closed, want 1 (MaxPendingPerClient 2)", closed)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(st.logs.String(), "reason="+socks5.ReasonPending); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no refusal line:\n%s", st.logs.String())
			break
		}
	}
	code, other, err := connectFrom(t, "127.0.0.2", st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("another client's CONNECT: reply %d, %v", code, err)
	}
	other.Close()
	for _, c := range silent {
		c.Close()
	}
	// Streams held open do not count as pending: three at once from the
	// address capped at two pending sessions.
	deadline := time.Now().Add(10 * time.Second)
	var held []net.Conn
	for len(held) < 3 {
		code, c, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
		if err == nil && code == replySucceeded {
			held = append(held, c)
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("CONNECT %d with %d streams held: reply %d, %v", len(held)+1, len(held), code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range held {
		c.Close()
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

func proxyPolicy(t testing.TB, cidrs []string) func(net.Addr) proxyproto.Policy {
	t.Helper()
	if len(cidrs) == 0 {
		return nil
	}
	p, err := mux.ProxyPolicy(cidrs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Behind a balancer trusted by --proxy-protocol-from, a SOCKS client is
// the one its PROXY header names (v1 or v2), for the router and its
// limits as on the TLS listener; a trusted peer without a valid header is
// refused and counted; an untrusted peer speaks SOCKS directly.
func TestProxyProtocolInFront(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}})
	client := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}
	v1 := proxyproto.HeaderProxyFromAddrs(1, client, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1080})
	v2 := proxyproto.HeaderProxyFromAddrs(2, client, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1080})
	for _, h := range []*proxyproto.Header{v1, v2} {
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := h.WriteTo(c); err != nil {
			t.Fatal(err)
		}
		code, _, err := handshake(c, nil, 1, "team-a.nexmux.test", 443)
		if err != nil || code != replySucceeded {
			t.Fatalf("PROXY v%d, CONNECT: reply %d, %v", h.Version, code, err)
		}
		tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
		if body, _ := get(t, tc); body != "203.0.113.7:5555 team-a.nexmux.test true" {
			t.Fatalf("PROXY v%d: the router saw %q, want the client the header names", h.Version, body)
		}
	}
	// A trusted peer that sends SOCKS without a header: refused, counted.
	if _, _, err := connectFrom(t, "127.0.0.1", st.socksAddr, nil, 1, "team-a.nexmux.test", 443); err == nil {
		t.Fatal("a trusted balancer's connection without a PROXY header was served")
	}
	for deadline := time.Now().Add(10 * time.Second); st.refusedFor(mux.ReasonProxyHeader) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d PROXY header refusals counted, want 1", st.refusedFor(mux.ReasonProxyHeader))
		}
	}
	// An untrusted peer speaks SOCKS as before, as itself.
	code, c, err := connectFrom(t, "127.0.0.2", st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("untrusted peer: reply %d, %v", code, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
	if body, _ := get(t, tc); !strings.HasPrefix(body, "127.0.0.2:") {
		t.Fatalf("untrusted peer: the router saw %q", body)
	}
}

// A balancer's header cut in two segments anywhere (v1 text as much as
// v2) is read whole, and the SOCKS client is the one it names.
func TestProxyProtocolSplitHeader(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}})
	client := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}
	for _, v := range []byte{1, 2} {
		hdr, err := proxyproto.HeaderProxyFromAddrs(v, client, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1080}).Format()
		if err != nil {
			t.Fatal(err)
		}
		for cut := 1; cut < len(hdr); cut++ {
			t.Run(fmt.Sprintf("v%d/cut-%d", v, cut), func(t *testing.T) {
				c, err := net.Dial("tcp", st.socksAddr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write(hdr[:cut]); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
				if _, err := c.Write(hdr[cut:]); err != nil {
					t.Fatal(err)
				}
				code, _, err := handshake(c, nil, 1, "team-a.nexmux.test", 443)
				if err != nil || code != replySucceeded {
					t.Fatalf("CONNECT: reply %d, %v", code, err)
				}
				tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
				if body, _ := get(t, tc); body != "203.0.113.7:5555 team-a.nexmux.test true" {
					t.Fatalf("the router saw %q, want the client the header names", body)
				}
			})
		}
	}
}

// The handshake deadline still holds after a balancer's PROXY header: a
// client that sends the header and then nothing is closed, not kept.
func TestProxyProtocolThenSilence(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, opts: socks5.Options{HandshakeTimeout: 300 * time.Millisecond}})
	c := dialVia(t, st, 2)
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("silent client after its PROXY header: %v, want closed at the handshake timeout", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("closed after %v: before the handshake timeout, so not by it", took)
	}
	if n := st.refusedFor(mux.ReasonProxyHeader); n != 0 {
		t.Fatalf("a valid header counted as %d PROXY header refusals", n)
	}
}

// A trusted balancer's health check on the SOCKS port (connect, close,
// nothing sent) is a closed connection logged at debug, as on the TLS
// listener, not a PROXY header refusal; a header naming no IP client
// (AF_UNIX) leaves the balancer as the client, as there too.
func TestBalancerHealthCheckAndUnixHeader(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}})
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); st.refusedFor(mux.ReasonClosed) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("health check: %d closed, %d proxy_header; want it counted as closed:\n%s", st.refusedFor(mux.ReasonClosed), st.refusedFor(mux.ReasonProxyHeader), st.logs.String())
		}
	}
	if n := st.refusedFor(mux.ReasonProxyHeader); n != 0 || strings.Contains(st.logs.String(), "level=INFO") {
		t.Fatalf("health check: %d proxy_header refusals, log:\n%s", n, st.logs.String())
	}

	c, err = net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
		SourceAddr: &net.UnixAddr{Net: "unix", Name: "/run/a.sock"}, DestinationAddr: &net.UnixAddr{Net: "unix", Name: "/run/b.sock"}}
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	code, _, err := handshake(c, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT: reply %d, %v", code, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
	if body, _ := get(t, tc); !strings.HasPrefix(body, c.LocalAddr().String()+" ") {
		t.Fatalf("AF_UNIX header: the router saw %q, want the balancer %s", body, c.LocalAddr())
	}
}

// A balancer's health checks (PROXY v2 LOCAL) hold no pending place of
// the balancer's address, which the SOCKS clients its headers name no IP
// for share: checks open at once neither refuse those clients nor are
// refused for them.
func TestHealthChecksHoldNoPendingClientPlace(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, opts: socks5.Options{MaxPendingPerClient: 2}})
	headers := map[string]*proxyproto.Header{
		"health check": {Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC},
		"unix client": {Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
			SourceAddr: &net.UnixAddr{Net: "unix", Name: "/run/a.sock"}, DestinationAddr: &net.UnixAddr{Net: "unix", Name: "/run/b.sock"}},
	}
	// greet opens a session with the header and the SOCKS greeting, and
	// keeps it open, pending, until the (sub)test ends.
	greet := func(t *testing.T, kind string) error {
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := headers[kind].WriteTo(c); err != nil {
			return err
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{5, 1, 0}); err != nil {
			return err
		}
		var m [2]byte
		_, err = io.ReadFull(c, m[:])
		return err
	}
	for _, order := range [][2]string{{"health check", "unix client"}, {"unix client", "health check"}} {
		t.Run(order[0]+"s first", func(t *testing.T) {
			for i := range 2 {
				if err := greet(t, order[0]); err != nil {
					t.Fatalf("%s %d: %v", order[0], i+1, err)
				}
			}
			if err := greet(t, order[1]); err != nil {
				t.Fatalf("%s beside two %ss: %v", order[1], order[0], err)
			}
		})
		// The subtest's sessions end and give their places back.
		for deadline := time.Now().Add(10 * time.Second); st.ingress.PendingPlaces() != 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d pending places held after the sessions closed", st.ingress.PendingPlaces())
			}
		}
	}
}

// v2 LOCAL sessions (health checks, and HAProxy's clients relayed from an
// address that is not IP) hold pending places of the balancer's own pool,
// apart from the clients it names but bounded like them, so they cannot
// take every --max-pending place.
func TestLocalSessionsBoundedPerBalancer(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, opts: socks5.Options{MaxPendingPerClient: 2}})
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	greet := func() error { return greetBehind(t, st, local.WriteTo) }
	for i := range 2 {
		if err := greet(); err != nil {
			t.Fatalf("LOCAL session %d: %v", i+1, err)
		}
	}
	if err := greet(); err == nil {
		t.Fatal("a third LOCAL session was greeted beside two, over MaxPendingPerClient 2 (--max-conns-per-client)")
	}
	if n := st.ingress.PendingPlaces(); n != 2 {
		t.Fatalf("%d pending places held by two LOCAL sessions, want 2", n)
	}
}

// The stream of a v2 LOCAL session is the balancer's own, as a LOCAL
// connection on the TLS listener is: the router counts it in the
// balancer's own pool, not as a client of the balancer's address, which
// the clients its headers name no IP for (v1 UNKNOWN, AF_UNIX) share. So
// neither refuses the other, and LOCAL streams are still bounded.
func TestLocalStreamsHoldNoClientSlot(t *testing.T) {
	local := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	headers := map[string]func(io.Writer) (int64, error){
		"LOCAL": local.WriteTo,
		"UNKNOWN": func(w io.Writer) (int64, error) {
			n, err := io.WriteString(w, "PROXY UNKNOWN\r\n")
			return int64(n), err
		},
	}
	for _, order := range [][2]string{{"LOCAL", "UNKNOWN"}, {"UNKNOWN", "LOCAL"}} {
		t.Run(order[0]+" first", func(t *testing.T) {
			st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, maxConnsPerClient: 1})
			for _, kind := range order {
				if code := connectBehind(t, st, headers[kind]); code != replySucceeded {
					t.Fatalf("%s session's CONNECT beside the %s one's stream, --max-conns-per-client 1: reply %d, want %d", kind, order[0], code, replySucceeded)
				}
			}
			if code := connectBehind(t, st, headers["LOCAL"]); code != replyRefused {
				t.Fatalf("a second LOCAL stream beside one, --max-conns-per-client 1: reply %d, want %d", code, replyRefused)
			}
		})
	}
}

// connectBehind opens a session to st's SOCKS listener as a balancer does
// (header writes its PROXY header), CONNECTs to team-a and, when that
// succeeds, finishes a TLS request on the stream, which stays open until
// the test ends. It returns the CONNECT's reply code.
func connectBehind(t *testing.T, st *stack, header func(io.Writer) (int64, error)) byte {
	t.Helper()
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := header(c); err != nil {
		t.Fatal(err)
	}
	code, _, err := handshake(c, nil, 1, "team-a.nexmux.test", 443)
	if err != nil {
		t.Fatal(err)
	}
	if code == replySucceeded {
		tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS through the stream: %v", err)
		}
	}
	return code
}

// greetBehind opens a session to st's SOCKS listener as a balancer does
// (header writes its PROXY header), sends the SOCKS greeting and reads the
// method choice; the session stays open, pending, until the test ends.
func greetBehind(t *testing.T, st *stack, header func(io.Writer) (int64, error)) error {
	t.Helper()
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := header(c); err != nil {
		return err
	}
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return err
	}
	var m [2]byte
	_, err = io.ReadFull(c, m[:])
	return err
}

// A v1 "PROXY UNKNOWN" session is a relayed SOCKS client the balancer
// could not name, not a health check (go-proxyproto reads UNKNOWN as a
// LOCAL command): such clients share the balancer's pending places, as on
// the TLS listener, rather than escaping --max-pending-per-client.
func TestV1UnknownSessionsHoldPendingClientPlaces(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, opts: socks5.Options{MaxPendingPerClient: 2}})
	unix := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
		SourceAddr: &net.UnixAddr{Net: "unix", Name: "/run/a.sock"}, DestinationAddr: &net.UnixAddr{Net: "unix", Name: "/run/b.sock"}}
	greet := func(kind string) error {
		if kind == "unix" {
			return greetBehind(t, st, unix.WriteTo)
		}
		return greetBehind(t, st, func(w io.Writer) (int64, error) {
			n, err := io.WriteString(w, "PROXY UNKNOWN\r\n")
			return int64(n), err
		})
	}
	// An UNKNOWN session and an AF_UNIX one share the balancer's address:
	// a second UNKNOWN session is one too many (not a LOCAL session of the
	// balancer's own pool).
	for _, kind := range []string{"UNKNOWN", "unix"} {
		if err := greet(kind); err != nil {
			t.Fatalf("%s session: %v", kind, err)
		}
	}
	if err := greet("UNKNOWN"); err == nil {
		t.Fatal("an UNKNOWN session was greeted beside an UNKNOWN and a unix one, over MaxPendingPerClient 2 (--max-conns-per-client)")
	}
	if n := st.ingress.PendingPlaces(); n != 2 {
		t.Fatalf("%d per-client pending places held by two sessions, want 2", n)
	}
}

// A balancer's health check that resets its connection (HAProxy and many
// others close checks with RST) is a closed connection, as on the TLS
// listener: not a bad PROXY header logged at info every few seconds.
func TestBalancerHealthCheckResetIsClosed(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}})
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); st.refusedFor(mux.ReasonClosed)+st.refusedFor(mux.ReasonProxyHeader) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("reset health check never counted:\n%s", st.logs.String())
		}
	}
	if n := st.refusedFor(mux.ReasonProxyHeader); n != 0 || strings.Contains(st.logs.String(), "level=INFO") {
		t.Fatalf("reset health check: %d proxy_header refusals, %d closed, log:\n%s", n, st.refusedFor(mux.ReasonClosed), st.logs.String())
	}
}

// Refused CONNECTs are logged one by one only up to 10 a second: a client
// asking for names outside the table in a loop wrote a line each, with the
// names it chose. The rest are counted, and the next line says how many:
// every refusal is on a line or in a count. A burst may straddle a second
// (this one does), so the count may come on any later line, not only the
// last.
func TestRefusalLinesLimited(t *testing.T) {
	st := start(t, config{})
	refuse := func(host string) {
		t.Helper()
		code, c, err := connect(t, st.socksAddr, nil, 1, host, 443)
		if err != nil || code != replyNotAllowed {
			t.Fatalf("CONNECT %s: reply %d, %v", host, code, err)
		}
		c.Close()
	}
	testnet.RefusalBurst(t, refuse, st.logs.String, "reason="+socks5.ReasonDenied, "evil.example.com")
	if n := st.refused.Load(); n != 26 {
		t.Errorf("%d refusals counted, want every one of 26", n)
	}
}

// A client that ends its session with a reset (curl and browsers often do)
// is ordinary: no INFO line for each such session.
func TestClientResetIsNoNews(t *testing.T) {
	st := start(t, config{})
	for range 3 {
		code, c, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
		if err != nil || code != replySucceeded {
			t.Fatalf("CONNECT: reply %d, %v", code, err)
		}
		tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
		if body, _ := get(t, tc); body == "" {
			t.Fatal("no answer through the tunnel")
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	time.Sleep(300 * time.Millisecond)
	if logs := st.logs.String(); strings.Contains(logs, "level=INFO msg=\"socks5: ") {
		t.Fatalf("a client's reset logged at info:\n%s", logs)
	}
}

// Clients choose how often their sessions break the protocol (a wrong
// version, an unknown address type), so those lines are limited like
// refusals: up to 10 a second, the rest counted on the next line.
func TestProtocolErrorLinesLimited(t *testing.T) {
	st := start(t, config{})
	broken := func(version byte) {
		t.Helper()
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{version, 1, 0}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("version %d: the session was not closed: %v", version, err)
		}
	}
	nextSecond := func() {
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	}
	nextSecond()
	// The burst may span more than one second on a loaded machine: each
	// second it touched allows 10 lines.
	first := time.Now().Unix()
	for range 50 {
		broken(6)
	}
	seconds := int(time.Now().Unix()-first) + 1
	time.Sleep(1100 * time.Millisecond)
	broken(7)
	const last = "Unsupported SOCKS version: [7]"
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(st.logs.String(), last); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the last broken session was never logged:\n%s", st.logs.String())
		}
	}
	text := st.logs.String()
	lines := regexp.MustCompile(`(?m)^.*Unsupported SOCKS version.*$`).FindAllString(text, -1)
	if max := seconds*10 + 1; len(lines) > max {
		t.Fatalf("%d lines for 51 broken sessions, 50 of them within %d second(s), want at most %d", len(lines), seconds, max)
	}
	unlogged := 0
	for _, l := range lines {
		if m := regexp.MustCompile(`unlogged=(\d+)`).FindStringSubmatch(l); m != nil {
			var n int
			fmt.Sscan(m[1], &n)
			unlogged += n
		}
	}
	if len(lines)+unlogged != 51 {
		t.Fatalf("%d lines and %d said unlogged, want the 51 broken sessions accounted for:\n%s", len(lines), unlogged, text)
	}
}

// PerClientIPv6Prefix 64: pending sessions from addresses of one /64 share
// one client's MaxPendingPerClient; another /64 has its own.
func TestPendingPerClientIPv6Prefix(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, opts: socks5.Options{MaxPendingPerClient: 2, PerClientIPv6Prefix: 64}})
	from := func(ip string) error {
		return greetBehind(t, st, func(w io.Writer) (int64, error) {
			n, err := fmt.Fprintf(w, "PROXY TCP6 %s 2001:db8::ffff 40000 1080\r\n", ip)
			return int64(n), err
		})
	}
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2"} {
		if err := from(ip); err != nil {
			t.Fatalf("session from %s: %v", ip, err)
		}
	}
	if err := from("2001:db8:1:2::3"); err == nil {
		t.Fatal("a third pending session from one /64 was greeted, over MaxPendingPerClient 2")
	}
	// The refused address has no session of its own: the line names the
	// /64 that was counted, as the login throttle's does.
	if logs := st.logs.String(); !strings.Contains(logs, "reason=socks5_pending") || !strings.Contains(logs, "prefix=2001:db8:1:2::/64") {
		t.Errorf("the socks5_pending refusal does not name the /64 counted:\n%s", logs)
	}
	if err := from("2001:db8:1:3::1"); err != nil {
		t.Fatalf("session from another /64: %v", err)
	}
}

// loginFrom logs in as ci with password through a PROXY header naming ip
// (IPv6) as the client.
func loginFrom(t *testing.T, st *stack, ip, password string) error {
	t.Helper()
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "PROXY TCP6 %s 2001:db8::ffff 40000 1080\r\n", ip); err != nil {
		return err
	}
	_, _, err = handshake(c, &login{"ci", password}, 1, "team-a.nexmux.test", 443)
	return err
}

// With PerClientIPv6Prefix the login throttle counts one prefix as one
// client, as the pending-session limit does: a host holding a /64 must
// not get five fresh password guesses from every address in it.
func TestLoginThrottlePerClientIPv6Prefix(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, opts: socks5.Options{
		Users:               func() map[string]string { return map[string]string{"ci": "s3cret"} },
		PerClientIPv6Prefix: 64,
	}})
	login := func(ip, password string) error { return loginFrom(t, st, ip, password) }
	for i := 1; i <= 5; i++ {
		if err := login(fmt.Sprintf("2001:db8:1:2::%x", i), "guess"); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if err := login("2001:db8:1:2::99", "s3cret"); err == nil {
		t.Fatal("a sixth login from the same /64 got in after five failed ones: the throttle counts each address apart")
	}
	// The operator reading the warning must learn that the whole /64 is
	// blocked, not only the address that made the fifth guess.
	if logs := st.logs.String(); !strings.Contains(logs, "throttled") || !strings.Contains(logs, "prefix=2001:db8:1:2::/64") {
		t.Fatalf("the throttle's warning does not name the blocked /64:\n%s", logs)
	}
	if err := login("2001:db8:1:3::1", "s3cret"); err != nil {
		t.Fatalf("login from another /64: %v", err)
	}
	// The prefix is named too when the guess that blocks it comes from
	// the prefix's own first address.
	for i := 1; i <= 4; i++ {
		_ = login(fmt.Sprintf("2001:db8:1:4::%x", i), "guess")
	}
	_ = login("2001:db8:1:4::", "guess")
	if logs := st.logs.String(); !strings.Contains(logs, "prefix=2001:db8:1:4::/64") {
		t.Fatalf("the throttle's warning for a guess from 2001:db8:1:4:: does not name its /64:\n%s", logs)
	}
}

// The login throttle's table holds at most ThrottleEntries clients, even
// when every failed login comes from another address within the minute
// (a balancer passing on the open internet, a host with a /64): past it,
// each failure swept the whole table under the throttle's lock, so the
// table and every login's wait grew with the flood. A client it blocked
// stays blocked meanwhile.
func TestLoginThrottleTableBounded(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, opts: socks5.Options{
		Users: func() map[string]string { return map[string]string{"ci": "s3cret"} },
	}})
	login := func(ip, password string) error { return loginFrom(t, st, ip, password) }
	for range 5 {
		_ = login("2001:db8:ff::1", "guess")
	}
	flood := socks5.ThrottleEntries + socks5.ThrottleEntries/4
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := login(fmt.Sprintf("2001:db8:1:%x::%x", i>>16, i&0xffff), "guess"); err == nil {
					t.Error("wrong password accepted")
				}
			}
		}()
	}
	for i := range flood {
		next <- i
	}
	close(next)
	wg.Wait()
	if n := st.ingress.ThrottleTable(); n > socks5.ThrottleEntries {
		t.Errorf("after failed logins from %d addresses within the minute, the throttle holds %d entries, over its bound %d", flood, n, socks5.ThrottleEntries)
	}
	if err := login("2001:db8:ff::1", "s3cret"); err == nil {
		t.Error("the client blocked before the flood logged in with the right password")
	}
}

// dialVia connects to st's SOCKS5 listener; with version 1 or 2 it first
// sends a balancer's PROXY header naming the client 203.0.113.7:5555 and
// the balancer's address 10.0.0.1:1080 (0: none). It closes when t ends.
func dialVia(t *testing.T, st *stack, version byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if version != 0 {
		h := proxyproto.HeaderProxyFromAddrs(version, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1080})
		if _, err := h.WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// A session whose CONNECT is refused over --max-conns has given its place
// back by the time its client sees the connection end (go-socks5 closes it
// itself): a client that retries at once must be refused in SOCKS again,
// not have its session reset at accept for a place still held.
func TestRefusedSessionPlaceFreeAtItsEnd(t *testing.T) {
	st := start(t, config{maxConns: 3})
	code, held, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT under the limit: reply %d, %v", code, err)
	}
	defer held.Close()
	for i := range 200 {
		code, c, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
		refusedInSOCKS(t, code, c, err)
		c.Close()
		if open, _ := st.router.Open(); open != 2 {
			t.Fatalf("round %d: %d places held once the refused session ended, want the stream's 2", i, open)
		}
	}
}

// A reload that gives a CONNECT's port a port route moves the streams
// already open to it by name, as a new CONNECT there is then routed by
// port (and as it moves a direct connection redirected from that port:
// mux.TestReloadRevokesConnectionWhosePortGotARoute). A stream to the TLS
// port is routed by name on 443 only while 443 has no port route.
func TestReloadRevokesStreamWhosePortGotARoute(t *testing.T) {
	st := start(t, config{opts: socks5.Options{SNIPorts: []int{443, 8443}}})
	open := func(port int, want string) (net.Conn, *bufio.Reader) {
		t.Helper()
		code, c, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", port)
		if err != nil || code != replySucceeded {
			t.Fatalf("CONNECT team-a.nexmux.test:%d: reply %d, %v", port, code, err)
		}
		tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool(), NextProtos: []string{"http/1.1"}})
		br := bufio.NewReader(tc)
		if rt, err := keepAliveGet(tc, br); err != nil || rt != want {
			t.Fatalf("CONNECT team-a.nexmux.test:%d: route %q (%v), want %q", port, rt, err, want)
		}
		return tc, br
	}
	moved, movedR := open(443, "team-a.nexmux.test")
	stays, staysR := open(8443, "team-a.nexmux.test")

	tab, err := route.Build(route.Spec{Routes: []string{"team-a.nexmux.test=team-a"}, Ports: []string{"443=team-p"}})
	if err != nil {
		t.Fatal(err)
	}
	state := *st.router.State()
	state.Table = tab
	st.router.Update(&state)

	if rt, err := keepAliveGet(moved, movedR); err == nil {
		t.Errorf("the stream to :443 is still served after 443 got a port route: route %q", rt)
	}
	if rt, err := keepAliveGet(stays, staysR); err != nil || rt != "team-a.nexmux.test" {
		t.Errorf("the stream to :8443: route %q (%v), want team-a.nexmux.test", rt, err)
	}
	open(443, ":443")
}

// keepAliveGet sends one HTTP/1.1 request over c, keeping it open, and
// returns the route of the answer.
func keepAliveGet(c net.Conn, br *bufio.Reader) (string, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get("X-Route"), nil
}
