package socks5_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/socks5"
)

// exchange sends b on a fresh session, half-closes it when closeWrite, and
// returns everything read until the session ends (or 5 s pass: timedOut).
func exchange(t *testing.T, addr string, b []byte, closeWrite bool) (got []byte, timedOut bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	got, err = io.ReadAll(c)
	var ne net.Error
	return got, errors.As(err, &ne) && ne.Timeout()
}

// waitPlacesBack waits until no session holds a pending or --max-conns
// place any more.
func waitPlacesBack(t *testing.T, st *stack) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		open, _ := st.router.Open()
		if st.ingress.PendingPlaces() == 0 && open == 0 && st.ingress.LingeringSessions() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("places held after the sessions ended: %d pending, %d --max-conns, %d lingering", st.ingress.PendingPlaces(), open, st.ingress.LingeringSessions())
		}
	}
}

// Truncated and stalled negotiations end at the handshake deadline (or at
// once when the client half-closes), with no reply but what the bytes sent
// called for, and give every place back.
func TestTruncatedNegotiationsEnd(t *testing.T) {
	users := func() map[string]string { return map[string]string{"ci": "s3cret"} }
	for _, tc := range []struct {
		name  string
		users bool
		send  []byte
		reply []byte
	}{
		{"version only", false, []byte{5}, nil},
		{"methods short", false, []byte{5, 3, 0}, nil},
		{"255 methods announced, 10 sent", false, append([]byte{5, 255}, make([]byte, 10)...), nil},
		{"greeting then nothing", false, []byte{5, 1, 0}, []byte{5, 0}},
		{"request header only", false, []byte{5, 1, 0, 5, 1, 0}, []byte{5, 0}},
		{"name shorter than its length", false, []byte{5, 1, 0, 5, 1, 0, 3, 200, 'a', 'b'}, []byte{5, 0}},
		{"IPv6 address cut", false, []byte{5, 1, 0, 5, 1, 0, 4, 0, 0, 0, 0}, []byte{5, 0}},
		{"port cut", false, []byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 1}, []byte{5, 0}},
		{"login user cut", true, []byte{5, 1, 2, 1, 200, 'c', 'i'}, []byte{5, 2}},
		{"login password length missing", true, []byte{5, 1, 2, 1, 2, 'c', 'i'}, []byte{5, 2}},
		{"login password cut", true, []byte{5, 1, 2, 1, 2, 'c', 'i', 200, 's'}, []byte{5, 2}},
	} {
		for _, half := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/half-close %v", tc.name, half), func(t *testing.T) {
				t.Parallel()
				// Half-closed, the session ends on the client's FIN, far
				// sooner than a deadline long enough that no loaded machine
				// reaches it; else at a short one (exchange allows 5 s).
				timeout := time.Second
				if half {
					timeout = 30 * time.Second
				}
				cfg := config{maxConns: 8, opts: socks5.Options{HandshakeTimeout: timeout, MaxPendingPerClient: 4}}
				if tc.users {
					cfg.opts.Users = users
				}
				st := start(t, cfg)
				start := time.Now()
				got, timedOut := exchange(t, st.socksAddr, tc.send, half)
				if timedOut {
					t.Fatalf("session not ended after 5 s (got % x)", got)
				}
				if !bytes.Equal(got, tc.reply) {
					t.Fatalf("got % x, want % x", got, tc.reply)
				}
				if d := time.Since(start); half && d > 10*time.Second {
					t.Errorf("half-closed, ended after %v: at the handshake timeout (%v), not on the FIN", d, timeout)
				}
				waitPlacesBack(t, st)
			})
		}
	}
}

// Absurd method lists: 255 methods are read whole, the one nexmux offers
// is found among them wherever it stands, and a list without it gets "no
// acceptable methods".
func TestAbsurdMethodCounts(t *testing.T) {
	st := start(t, config{})
	auth := start(t, config{opts: socks5.Options{Users: func() map[string]string { return map[string]string{"ci": "s3cret"} }}})
	many := func(last byte) []byte {
		b := append([]byte{5, 255}, bytes.Repeat([]byte{0xfe}, 254)...)
		return append(b, last)
	}
	for _, tc := range []struct {
		name  string
		st    *stack
		send  []byte
		reply []byte
	}{
		{"no-auth last of 255", st, many(0), []byte{5, 0}},
		{"none of 255 acceptable", st, many(0x80), []byte{5, 0xff}},
		{"user/password last of 255, no-auth first", auth, append([]byte{5, 255, 0}, append(bytes.Repeat([]byte{0xfe}, 253), 2)...), []byte{5, 2}},
		{"no-auth only, 255 times", auth, append([]byte{5, 255}, make([]byte, 255)...), []byte{5, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tc.st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 2)
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, tc.reply) {
				t.Fatalf("method reply % x, %v; want % x", got, err, tc.reply)
			}
			if tc.reply[1] == 0 {
				// The request that follows is read from the right place.
				if code, _, err := handshakeAfterGreeting(c, "team-a.nexmux.test", 443); err != nil || code != replySucceeded {
					t.Fatalf("CONNECT after the 255 methods: reply %d, %v", code, err)
				}
			}
		})
	}
}

// handshakeAfterGreeting sends a CONNECT on c, whose greeting was answered
// already, and reads the reply.
func handshakeAfterGreeting(c net.Conn, host string, port int) (byte, net.Conn, error) {
	if _, err := c.Write(connectRequest(host, port)); err != nil {
		return 0, c, err
	}
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return 0, c, err
	}
	return rep[1], c, nil
}

// Logins with 255-byte fields, the most RFC 1929 carries, work, by hand
// and through golang.org/x/net/proxy; a wrong one of that length fails.
func TestLoginWithLongestFields(t *testing.T) {
	user, password := strings.Repeat("u", 255), strings.Repeat("\xff", 254)+":"
	st := start(t, config{opts: socks5.Options{Users: func() map[string]string { return map[string]string{user: password} }}})
	code, c, err := connect(t, st.socksAddr, &login{user, password}, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT with a 255-byte user and password: reply %d, %v", code, err)
	}
	tlsGet(t, st, c)
	if _, _, err := connect(t, st.socksAddr, &login{user, strings.Repeat("\xff", 255)}, 1, "team-a.nexmux.test", 443); err == nil || !strings.Contains(err.Error(), "login refused") {
		t.Fatalf("a wrong 255-byte password: %v, want the login refused", err)
	}
	d, err := proxy.SOCKS5("tcp", st.socksAddr, &proxy.Auth{User: user, Password: password}, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := d.Dial("tcp", "team-a.nexmux.test:443")
	if err != nil {
		t.Fatalf("x/net/proxy with 255-byte fields: %v", err)
	}
	defer pc.Close()
	tlsGet(t, st, pc)
	if n := st.logins.Load(); n != 1 {
		t.Errorf("%d failed logins counted, want 1", n)
	}
}

// Names with bytes no host name holds are refused (never taken for a
// route by what they start or end with), and logged on one line.
func TestOddNamesRefused(t *testing.T) {
	st := start(t, config{spec: route.Spec{Default: "fallback", Routes: []string{"*.wild.nexmux.test=wild"}}})
	odd := []string{
		"team-a.nexmux.test\x00",
		"\x00team-a.nexmux.test",
		"team-a.nexmux.test\x00.evil.example",
		"team-a.nexmux.test\n",
		"team-a.nexmux.test\r\nlevel=ERROR msg=forged",
		"team-a nexmux.test",
		"team-a.nexmux.test/",
		"team-a.nexmux.test\\",
		"team-a..nexmux.test",
		".team-a.nexmux.test",
		"team-a.nexmux.test..",
		"*.wild.nexmux.test",
		"x.*.wild.nexmux.test",
		"team-a.nexmux.test%00",
		"t\xc3\xa9am-a.nexmux.test",
		"\xffteam-a.nexmux.test",
		"team-a.nexmux.test\xff",
		strings.Repeat("a", 255),
		strings.Repeat("a.", 127) + "t",
		"127.0.0.1%lo",
		"127.0.0.1\x00",
		"[127.0.0.1]",
		"[::1",
		"::1]",
		"[[::1]]",
		"1.2.3.4.5",
		"1",
		"@",
	}
	for _, host := range odd {
		code, c, err := connect(t, st.socksAddr, nil, 1, host, 443)
		if err != nil || code != replyNotAllowed {
			t.Errorf("CONNECT %q:443: reply %d, %v; want %d", host, code, err, replyNotAllowed)
			continue
		}
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("CONNECT %q: session not closed after the refusal: %v", host, err)
		}
	}
	if n := st.refused.Load(); n != int64(len(odd)) {
		t.Errorf("%d refusals counted, want %d", n, len(odd))
	}
	for _, l := range strings.Split(strings.TrimSpace(st.logs.String()), "\n") {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("a log line a name broke: %q", l)
		}
	}
	if strings.Contains(st.logs.String(), "\nlevel=ERROR msg=forged") {
		t.Errorf("a name forged a log line:\n%s", st.logs.String())
	}
	// The wildcard itself routes names under it, not the literal star.
	if code, c, err := connect(t, st.socksAddr, nil, 1, "x.wild.nexmux.test", 443); err != nil || code != replySucceeded {
		t.Errorf("CONNECT x.wild.nexmux.test: reply %d, %v", code, err)
	} else {
		c.Close()
	}
}

// Address types SOCKS5 does not define get "address type not supported"
// (reply 8) and the end of the session; none routes.
func TestUndefinedAddressTypes(t *testing.T) {
	st := start(t, config{spec: route.Spec{Default: "fallback"}})
	for _, atyp := range []byte{0, 2, 5, 6, 0x7f, 0x80, 0xff} {
		send := []byte{5, 1, 0, 5, 1, 0, atyp, 127, 0, 0, 1, 1, 187}
		got, timedOut := exchange(t, st.socksAddr, send, false)
		want := []byte{5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0}
		if timedOut || !bytes.Equal(got, want) {
			t.Errorf("address type %d: got % x (timed out %v), want % x", atyp, got, timedOut, want)
		}
	}
	waitPlacesBack(t, st)
}

// BIND and UDP ASSOCIATE, with every address type and destinations in and
// out of the table (UDP ASSOCIATE's usual 0.0.0.0:0), get "command not
// supported" and nothing else: no listener, no relay.
func TestBindAndUDPAssociateNeverServed(t *testing.T) {
	port, hits := testnet.Sentinel(t)
	st := start(t, config{spec: route.Spec{Default: "fallback"}})
	for _, cmd := range []byte{2, 3} {
		for _, dst := range []struct {
			atyp byte
			host string
			port int
		}{
			{atypIPv4, "0.0.0.0", 0},
			{atypIPv4, "127.0.0.1", port},
			{atypIPv6, "::", 0},
			{atypName, "team-a.nexmux.test", 443},
			{atypName, "localhost", port},
		} {
			c, err := net.Dial("tcp", st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			code, _, err := handshakeAs(c, nil, cmd, dst.atyp, dst.host, dst.port)
			if err != nil || code != replyCmdUnsupported {
				t.Errorf("command %d to %s:%d: reply %d, %v; want %d", cmd, dst.host, dst.port, code, err, replyCmdUnsupported)
			}
			if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
				t.Errorf("command %d to %s:%d: after the reply % x, %v; want the end", cmd, dst.host, dst.port, b, err)
			}
			c.Close()
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the sentinel saw %d connections", n)
	}
}

// One client holding many sessions that greeted and went quiet holds at
// most MaxPendingPerClient of them; another client still gets through,
// and the places come back at the handshake deadline. Sessions the client
// half-closes after its greeting end at once and hold nothing.
func TestManyHalfOpenSessionsFromOneClient(t *testing.T) {
	const perClient = 4
	st := start(t, config{maxConns: 64, opts: socks5.Options{MaxPendingPerClient: perClient, HandshakeTimeout: 500 * time.Millisecond}})
	greetOne := func(halfClose bool) (net.Conn, bool) {
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte{5, 1, 0}); err != nil {
			return c, false
		}
		if halfClose {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		var m [2]byte
		_, err = io.ReadFull(c, m[:])
		return c, err == nil
	}
	greeted := 0
	var quiet []net.Conn
	for range 3 * perClient {
		c, ok := greetOne(false)
		quiet = append(quiet, c)
		if ok {
			greeted++
		}
	}
	if greeted != perClient {
		t.Fatalf("%d quiet sessions of one client greeted, want %d", greeted, perClient)
	}
	if _, ok := greetOne(true); ok {
		t.Fatal("a half-closed session greeted beside the quiet ones at the limit")
	}
	code, other, err := connectFrom(t, "127.0.0.2", st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("another client's CONNECT: reply %d, %v", code, err)
	}
	other.Close()
	start := time.Now()
	for _, c := range quiet {
		_, _ = io.Copy(io.Discard, c)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the quiet sessions ended %v later, handshake timeout 500ms", d)
	}
	for _, c := range quiet {
		c.Close()
	}
	waitPlacesBack(t, st)
	// Half-closed after the greeting: each ends, its place back, so the
	// next finds it.
	for i := range 3 * perClient {
		c, ok := greetOne(true)
		if !ok {
			t.Fatalf("half-closed session %d not greeted: the ones before hold places", i)
		}
		if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
			t.Fatalf("half-closed session %d: % x, %v after the greeting; want the end", i, b, err)
		}
		c.Close()
	}
	waitPlacesBack(t, st)
}

// A CONNECT to anything outside the route table never leaves nexmux, in
// whatever form the address comes: a listener on loopback sees nothing.
func TestAllowListNeverDialsOut(t *testing.T) {
	port, hits := testnet.Sentinel(t)
	// The sentinel's port: a port route elsewhere would take any host.
	for _, def := range []string{"", "fallback"} {
		st := start(t, config{spec: route.Spec{Default: def}})
		_, sp, _ := net.SplitHostPort(st.socksAddr)
		for _, dst := range []struct {
			atyp byte
			host string
			port int
		}{
			{atypIPv4, "127.0.0.1", port},
			{atypIPv4, "0.0.0.0", port},
			{atypIPv6, "::1", port},
			{atypIPv6, "::ffff:127.0.0.1", port},
			{atypName, "127.0.0.1", port},
			{atypName, "127.1", port},
			{atypName, "2130706433", port},
			{atypName, "0x7f.0.0.1", port},
			{atypName, "[::1]", port},
			{atypName, "[::ffff:127.0.0.1]", port},
			{atypName, "localhost", port},
			{atypName, "localhost.", port},
			{atypName, "team-a.nexmux.test", port},
			{atypName, "127.0.0.1", mustAtoi(t, sp)},
		} {
			c, err := net.Dial("tcp", st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			code, _, err := handshakeAs(c, nil, 1, dst.atyp, dst.host, dst.port)
			c.Close()
			if err != nil || code != replyNotAllowed {
				t.Errorf("default %q, CONNECT %s:%d (type %d): reply %d, %v; want %d", def, dst.host, dst.port, dst.atyp, code, err, replyNotAllowed)
			}
		}
		// x/net/proxy, as a real client, is refused the same way.
		d, err := proxy.SOCKS5("tcp", st.socksAddr, nil, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("localhost:%d", port), "example.com:443"} {
			if c, err := d.Dial("tcp", a); err == nil {
				c.Close()
				t.Errorf("x/net/proxy reached %s", a)
			} else if !strings.Contains(err.Error(), "not allowed") {
				t.Errorf("x/net/proxy to %s: %v, want not allowed", a, err)
			}
		}
		st.shutdown()
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the sentinel saw %d connections", n)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Go's SOCKS client reads a refusal's reply and closes without waiting for
// the end of the stream; retried at once, at its pending limit of one, it
// is refused the same way each time, never reset at accept.
func TestXNetProxyRetriesAfterRefusal(t *testing.T) {
	st := start(t, config{maxConns: 2, opts: socks5.Options{MaxPendingPerClient: 1}})
	d, err := proxy.SOCKS5("tcp", st.socksAddr, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		c, err := d.Dial("tcp", "nowhere.example:443")
		if err == nil {
			c.Close()
			t.Fatalf("try %d: nowhere.example reached", i)
		}
		if !strings.Contains(err.Error(), "not allowed") {
			t.Fatalf("try %d: %v; want the refusal (not allowed by ruleset), not a session closed at accept", i, err)
		}
	}
	c, err := d.Dial("tcp", "team-a.nexmux.test:443")
	if err != nil {
		t.Fatalf("after the refusals: %v", err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.ca.Pool()})
	if _, rt := get(t, tc); rt != "team-a.nexmux.test" {
		t.Fatalf("route %q", rt)
	}
}
