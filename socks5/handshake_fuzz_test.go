package socks5_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/socks5"
)

// The fuzz servers' deadlines: short, so that a session kept open costs
// little, and the bounds below are derived from them.
const (
	fuzzHandshake = 100 * time.Millisecond // the SOCKS negotiation
	fuzzRouter    = 100 * time.Millisecond // the router's handshake, header and idle timeouts
	fuzzIdle      = 300 * time.Millisecond // a SOCKS stream with no traffic
	// fuzzSlack is scheduling under -race on a loaded two-core machine.
	fuzzSlack = 2 * time.Second
	// fuzzPortRoute is the fuzz table's port route.
	fuzzPortRoute = 8082
)

// The longest a session may take: without a stream, its handshake
// deadline (a refusal's linger ends there too); with one, the router's
// handshake, header and idle timeouts and the stream's own idle timeout
// after them (twice: an echoed byte restarts it).
const (
	boundNoStream = fuzzHandshake + fuzzSlack
	boundStream   = fuzzHandshake + 3*fuzzRouter + 2*fuzzIdle + fuzzSlack
)

// How a fuzz input is sent (the how argument's low two bits).
const (
	sendHalfClose = iota // all of it, then a half-close
	sendSplit            // in two writes at a cut, a pause between, then a half-close
	sendCut              // up to a cut, then a full close without reading
	sendKeepOpen         // all of it, then read until the server closes (how == 3 only)
)

// fuzzUser is the fuzz users server's one login.
var fuzzUser = login{"ci", "s3cret"}

// expectation is what the SOCKS5 protocol (RFC 1928, RFC 1929) and the
// allow-list say the server does with a client's bytes, all of them
// received before their end: reply is everything it writes before any
// stream bytes, and connect says the bytes end in a CONNECT the
// allow-list takes, the one request the server may dial for.
type expectation struct {
	reply   []byte
	connect bool
	port    int // the CONNECT's port
}

// expect reads in as go-socks5 does, its own model of the allow-list in
// place of the server's lookup: the table is team-a.nexmux.test and
// pt.nexmux.test by name on 443, a default route for IP literals on 443,
// and port 8082 whatever the host. bound is the server's reply to a
// successful CONNECT (its listener's address).
func expect(in []byte, users bool, bound []byte) expectation {
	var e expectation
	take := func(n int) ([]byte, bool) {
		if len(in) < n {
			in = nil
			return nil, false
		}
		b := in[:n]
		in = in[n:]
		return b, true
	}
	refuse := func(rep byte) expectation {
		e.reply = append(e.reply, 5, rep, 0, 1, 0, 0, 0, 0, 0, 0)
		return e
	}
	v, ok := take(1)
	if !ok || v[0] != 5 {
		return e
	}
	n, ok := take(1)
	if !ok {
		return e
	}
	methods, ok := take(int(n[0]))
	if !ok {
		return e
	}
	method := byte(0)
	if users {
		method = 2
	}
	if bytes.IndexByte(methods, method) < 0 {
		e.reply = append(e.reply, 5, 0xff)
		return e
	}
	e.reply = append(e.reply, 5, method)
	if users {
		h, ok := take(2)
		if !ok || h[0] != 1 {
			return e
		}
		user, ok := take(int(h[1]))
		if !ok {
			return e
		}
		pl, ok := take(1)
		if !ok {
			return e
		}
		pass, ok := take(int(pl[0]))
		if !ok {
			return e
		}
		if string(user) != fuzzUser.user || string(pass) != fuzzUser.password {
			e.reply = append(e.reply, 1, 1)
			return e
		}
		e.reply = append(e.reply, 1, 0)
	}
	h, ok := take(3)
	if !ok || h[0] != 5 {
		return e
	}
	a, ok := take(1)
	if !ok {
		return e
	}
	var addr []byte
	switch a[0] {
	case atypIPv4:
		addr, ok = take(4)
	case atypIPv6:
		addr, ok = take(16)
	case atypName:
		var l []byte
		if l, ok = take(1); ok {
			addr, ok = take(int(l[0]))
		}
	default:
		return refuse(8) // address type not supported
	}
	if !ok {
		return e
	}
	p, ok := take(2)
	if !ok {
		return e
	}
	port := int(binary.BigEndian.Uint16(p))
	if h[1] != 1 {
		return refuse(7) // command not supported: BIND, UDP ASSOCIATE, others
	}
	if !allowed(a[0], addr, port) {
		return refuse(2) // not allowed by ruleset
	}
	e.reply = append(e.reply, bound...)
	e.connect, e.port = true, port
	return e
}

// allowed is the fuzz table's allow-list: where a direct connection to
// that host and port would have a route.
func allowed(atyp byte, addr []byte, port int) bool {
	switch {
	case port == fuzzPortRoute:
		return true
	case port != 443:
		return false
	case atyp != atypName:
		return true // an IP literal: the default route
	}
	h := string(addr)
	// An IPv6 literal in brackets, as a URL writes it, is the address.
	if len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
		if a, err := netip.ParseAddr(h[1 : len(h)-1]); err == nil && a.Is6() {
			h = h[1 : len(h)-1]
		}
	}
	if len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Zone() == "" {
		return true
	}
	// Names compare in ASCII case only, as a server name does.
	lower := []byte(h)
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	return string(lower) == "team-a.nexmux.test" || string(lower) == "pt.nexmux.test"
}

// wellFormed checks what a server wrote as SOCKS5 from the start: a method
// choice, a login status when users log in, a request reply with a valid
// REP and a bound address, then stream bytes only after success. It
// returns the number of SOCKS bytes, and true when a stream followed.
func wellFormed(out []byte, users bool) (int, bool, error) {
	if len(out) == 0 {
		return 0, false, nil
	}
	if len(out) < 2 || out[0] != 5 {
		return 0, false, errors.New("method choice is not VER 5 and one byte")
	}
	want := byte(0)
	if users {
		want = 2
	}
	switch {
	case out[1] == 0xff:
		if len(out) != 2 {
			return 0, false, errors.New("bytes after \"no acceptable methods\"")
		}
		return 2, false, nil
	case out[1] != want:
		return 0, false, errors.New("method chosen is not the one configured")
	}
	i := 2
	if users && len(out) > i {
		if len(out) < i+2 || out[i] != 1 || out[i+1] > 1 {
			return 0, false, errors.New("login status is not VER 1 and 0 or 1")
		}
		i += 2
		if out[i-1] != 0 {
			if len(out) != i {
				return 0, false, errors.New("bytes after a failed login")
			}
			return i, false, nil
		}
	}
	if len(out) == i {
		return i, false, nil
	}
	r := out[i:]
	if len(r) < 4 || r[0] != 5 || r[1] > 8 || r[2] != 0 {
		return 0, false, errors.New("reply is not VER 5, REP 0 to 8, RSV 0")
	}
	n := map[byte]int{atypIPv4: 4, atypIPv6: 16}[r[3]]
	if n == 0 || len(r) < 4+n+2 {
		return 0, false, errors.New("reply's bound address is no IPv4 or IPv6 address and port")
	}
	i += 4 + n + 2
	if r[1] != 0 && len(out) != i {
		return 0, false, errors.New("bytes after a failed request")
	}
	return i, r[1] == 0, nil
}

// dial is one dial the server asked for, as SetDialed reports it.
type dial struct {
	addr    string
	port    int
	decided bool
}

// fuzzIngress is the fuzz targets' two ingresses, one without logins and
// one with fuzzUser, on one table, with the dials they ask for.
type fuzzIngress struct {
	open, auth *stack
	beAccepts  atomic.Int64 // the passthrough backend's connections
	sniDials   atomic.Int64 // dials routed by name, over the whole run
	mu         sync.Mutex
	dials      map[string][]dial // by client address
	clients    atomic.Uint32     // the client addresses taken
}

// startFuzzIngress starts the fuzz ingresses with short deadlines: the
// table has team-a.nexmux.test (TLS), pt.nexmux.test (passthrough to an
// echo backend), a default route and the port route fuzzPortRoute.
func startFuzzIngress(f *testing.F) *fuzzIngress {
	// A passthrough backend that echoes: the one network dial a stream
	// can make.
	be, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { be.Close() })
	fx := &fuzzIngress{dials: map[string][]dial{}}
	go func() {
		for {
			c, err := be.Accept()
			if err != nil {
				return
			}
			fx.beAccepts.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(boundStream))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	cfg := config{
		spec:          route.Spec{Ports: []string{strconv.Itoa(fuzzPortRoute) + "=team-p"}, Default: "fallback"},
		backend:       be.Addr().String(),
		routerTimeout: fuzzRouter,
		opts:          socks5.Options{HandshakeTimeout: fuzzHandshake, IdleTimeout: fuzzIdle},
	}
	fx.open = start(f, cfg)
	cfg.opts.Users = func() map[string]string { return map[string]string{fuzzUser.user: fuzzUser.password} }
	fx.auth = start(f, cfg)

	socks5.SetDialed(f, func(client net.Addr, addr string, port int, decided bool) {
		fx.mu.Lock()
		fx.dials[client.String()] = append(fx.dials[client.String()], dial{addr, port, decided})
		fx.mu.Unlock()
		if decided && port == 0 {
			fx.sniDials.Add(1)
		}
	})
	return fx
}

// session sends in to the ingress users picks, the way how says, and
// checks what the server did with it (see FuzzSOCKS5Handshake).
func (fx *fuzzIngress) session(t *testing.T, users bool, in []byte, how uint8) {
	st := fx.open
	if users {
		st = fx.auth
	}
	fx.open.logs.Reset() // a line per refusal, kept for nothing here
	fx.auth.logs.Reset()
	mode := int(how & 3)
	if mode == sendKeepOpen && how != sendKeepOpen {
		// Kept open, a session costs up to its deadline: rarely.
		mode = sendHalfClose
	}
	cut := min(int(how>>2), len(in))
	// A client address of its own per input: the login throttle never
	// blocks it, no ephemeral ports run out, and its dials are its own.
	n := fx.clients.Add(1)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, byte(1+n>>16%250), byte(n>>8), byte(n))}}
	// From before the dial: the server's deadline runs from its accept,
	// which a client descheduled after its dial may write long after.
	start := time.Now()
	c, err := d.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.LocalAddr().String()
	_ = c.(*net.TCPConn).SetNoDelay(true)
	_ = c.SetDeadline(start.Add(boundStream))
	// A write refused by a server that has closed already is what
	// an early close does; what was read says the rest.
	switch mode {
	case sendSplit:
		_, err = c.Write(in[:cut])
		time.Sleep(500 * time.Microsecond)
		if err == nil {
			_, _ = c.Write(in[cut:])
		}
		_ = c.(*net.TCPConn).CloseWrite()
	case sendCut:
		_, _ = c.Write(in[:cut])
		c.Close()
	default:
		_, _ = c.Write(in)
		if mode == sendHalfClose {
			_ = c.(*net.TCPConn).CloseWrite()
		}
	}
	var out []byte
	var readErr error
	if mode != sendCut {
		out, readErr = io.ReadAll(c)
		if err := readErr; err != nil && !isReset(err) {
			t.Fatalf("%q (how %d): still open after %v: %v; read %q", in, how, boundStream, err, out)
		}
	}
	took := time.Since(start)

	// The session ends: its goroutine forgets it as it returns, and
	// every place comes back (a stream's when the router is done with it).
	for deadline := time.Now().Add(boundStream); ; time.Sleep(time.Millisecond) {
		placesOpen, _ := st.router.Open()
		if st.ingress.Sessions() == 0 && st.ingress.PendingPlaces() == 0 && st.ingress.LingeringSessions() == 0 && placesOpen == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q (how %d): after the session: %d sessions, %d pending, %d lingering, %d --max-conns places", in, how, st.ingress.Sessions(), st.ingress.PendingPlaces(), st.ingress.LingeringSessions(), placesOpen)
		}
	}

	ap := netip.MustParseAddrPort(st.socksAddr)
	bound := binary.BigEndian.AppendUint16(append([]byte{5, 0, 0, atypIPv4}, ap.Addr().AsSlice()...), ap.Port())
	e := expect(in, users, bound)
	if mode == sendCut {
		e = expect(in[:cut], users, bound)
	}
	fx.mu.Lock()
	got := fx.dials[client]
	delete(fx.dials, client)
	fx.mu.Unlock()

	// Dialled only what the allow-list takes, at most once.
	if len(got) > 1 {
		t.Fatalf("%q (how %d): %d dials %v for one session", in, how, len(got), got)
	}
	if len(got) == 1 {
		g := got[0]
		_, p, _ := net.SplitHostPort(g.addr)
		wantPort := 0
		if e.port == fuzzPortRoute {
			wantPort = fuzzPortRoute
		}
		switch {
		case !e.connect:
			t.Fatalf("%q (how %d): dialled %v for a session the allow-list refuses or that never asked", in, how, g)
		case p != strconv.Itoa(e.port) || !g.decided || g.port != wantPort:
			t.Fatalf("%q (how %d): dialled %v for a CONNECT to port %d (want the decision port %d)", in, how, g, e.port, wantPort)
		}
	}
	if a, s := fx.beAccepts.Load(), fx.sniDials.Load(); a > s {
		t.Fatalf("%q (how %d): the passthrough backend accepted %d connections, for %d streams routed by name", in, how, a, s)
	}
	if mode == sendCut {
		return // nothing read: what the server made of the bytes it got is checked above
	}

	// Well-formed, and ended within the deadlines.
	nSOCKS, stream, err := wellFormed(out, users)
	if err != nil {
		t.Fatalf("%q (how %d): wrote %q: %v", in, how, out, err)
	}
	if !stream && took > boundNoStream {
		t.Fatalf("%q (how %d): no stream, yet the session took %v (handshake deadline %v)", in, how, took, fuzzHandshake)
	}
	if stream && len(got) != 1 {
		t.Fatalf("%q (how %d): replied success with %d dials", in, how, len(got))
	}

	// Exactly what the protocol calls for. A deadline may have cut a
	// session on a slow machine: then a part of it.
	reply := out[:nSOCKS]
	cutShort := took >= fuzzHandshake && bytes.HasPrefix(e.reply, reply) && len(got) == 0
	if !bytes.Equal(reply, e.reply) && !cutShort {
		t.Fatalf("%q (how %d, users %v): wrote %q (then %v, after %v), want %q", in, how, users, out, readErr, took, e.reply)
	}
	if e.connect && len(got) != 1 && !cutShort {
		t.Fatalf("%q (how %d): a CONNECT the allow-list takes, no dial", in, how)
	}
}

// fuzzHello is a TLS ClientHello for name; with none, what a client that
// dialled an address sends.
func fuzzHello(f *testing.F, name string) []byte {
	return testnet.ClientHello(f, &tls.Config{ServerName: name, InsecureSkipVerify: name == ""})
}

// FuzzSOCKS5Handshake: whatever a client sends (greeting, login, request,
// stream bytes; cut short, in pieces, closed early or left open) to a real
// ingress over loopback TCP, nothing panics; the session ends, every
// goroutine and place given back, within a bound its deadlines set; the
// server dials only a CONNECT its allow-list takes, and exactly when one
// arrives, seen from the dialer it is given, whatever it replies; and what
// it writes is well-formed SOCKS5, exactly what the protocol and the
// allow-list call for. users picks the server requiring a login.
func FuzzSOCKS5Handshake(f *testing.F) {
	fx := startFuzzIngress(f)
	hello := func(name string) []byte { return fuzzHello(f, name) }
	req := func(cmd, atyp byte, addr []byte, port int) []byte {
		b := []byte{5, cmd, 0, atyp}
		if atyp == atypName {
			b = append(b, byte(len(addr)))
		}
		return binary.BigEndian.AppendUint16(append(b, addr...), uint16(port))
	}
	name := func(cmd byte, host string, port int) []byte { return req(cmd, atypName, []byte(host), port) }
	greet := []byte{5, 1, 0}
	greetUser := []byte{5, 2, 0, 2}
	loginAs := func(user, pass string) []byte {
		b := append([]byte{1, byte(len(user))}, user...)
		return append(append(b, byte(len(pass))), pass...)
	}
	ok := loginAs(fuzzUser.user, fuzzUser.password)
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	get := []byte("GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n")
	for _, s := range []struct {
		users bool
		in    []byte
	}{
		// Allowed: a route name (the TLS route, the passthrough one to
		// the echo backend), IP literals to the default route, the port
		// route with plain HTTP, with and without stream bytes.
		{false, cat(greet, name(1, "team-a.nexmux.test", 443), hello("team-a.nexmux.test"))},
		{false, cat(greet, name(1, "pt.nexmux.test", 443), hello("pt.nexmux.test"), []byte("after the hello"))},
		{false, cat(greet, name(1, "TEAM-A.NEXMUX.TEST.", 443))},
		{false, cat(greet, req(1, atypIPv4, []byte{127, 0, 0, 1}, 443), hello(""))},
		{false, cat(greet, req(1, atypIPv6, net.IPv6loopback, 443))},
		{false, cat(greet, name(1, "[::1]", 443))},
		{false, cat(greet, name(1, "10.0.0.1", 443))},
		{false, cat(greet, req(1, atypIPv4, []byte{10, 0, 0, 1}, fuzzPortRoute), get)},
		{false, cat(greet, name(1, "", fuzzPortRoute), get)},
		{true, cat(greetUser, ok, name(1, "pt.nexmux.test", 443), hello("pt.nexmux.test"))},
		{true, cat(greetUser, ok, req(1, atypIPv4, []byte{192, 0, 2, 1}, fuzzPortRoute))},
		// Refused by the allow-list, the command or the address type.
		{false, cat(greet, name(1, "evil.example.com", 443))},
		{false, cat(greet, name(1, "team-a.nexmux.test", 22))},
		{false, cat(greet, req(1, atypIPv4, []byte{127, 0, 0, 1}, 22))},
		{false, cat(greet, name(1, "", 443))},
		{false, cat(greet, name(1, "team-a.nexmux.test:443", 443))},
		{false, cat(greet, name(1, "fe80::1%lo", 443))},
		{false, cat(greet, name(2, "team-a.nexmux.test", 443))},
		{false, cat(greet, req(3, atypIPv4, []byte{0, 0, 0, 0}, 0))},
		{false, cat(greet, name(9, "team-a.nexmux.test", 443))},
		{false, cat(greet, []byte{5, 1, 0, 5, 0, 0})},
		// Broken greetings and logins.
		{false, []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}},
		{false, []byte{5, 0}},
		{false, []byte{5, 1, 2}},
		{false, []byte{5, 255, 0}},
		{true, cat(greet, name(1, "pt.nexmux.test", 443))},
		{true, cat(greetUser, loginAs("ci", "wrong"), name(1, "pt.nexmux.test", 443))},
		{true, cat(greetUser, []byte{2, 2}, []byte("ci"))},
		{true, cat(greetUser, loginAs("", ""))},
		// Cut short.
		{false, []byte{5}},
		{false, cat(greet, []byte{5, 1, 0, atypName, 200, 'a'})},
		{false, cat(greet, []byte{5, 1, 0, atypIPv6, 0, 0})},
		{true, cat(greetUser, []byte{1, 200, 'c'})},
		{false, nil},
	} {
		for _, how := range []uint8{sendHalfClose, sendSplit | 4<<2, sendCut | 5<<2, sendKeepOpen} {
			f.Add(s.users, s.in, how)
		}
	}

	f.Fuzz(fx.session)
}

// FuzzSOCKS5Connect is FuzzSOCKS5Handshake for CONNECT destinations: a
// greeting and a request always framed right (a name's length byte is its
// length, an address its size), so that mutating a name, address or port
// explores the allow-list, which in raw bytes a name's length prefix
// guards. atyp%3 picks IPv4 (host's first 4 bytes), IPv6 (16) or a name
// (up to 255); tail is what the client sends after the request, then it
// half-closes.
func FuzzSOCKS5Connect(f *testing.F) {
	fx := startFuzzIngress(f)
	pt := fuzzHello(f, "pt.nexmux.test")
	for _, s := range []struct {
		atyp byte
		host string
		port uint16
		tail []byte
	}{
		{2, "team-a.nexmux.test", 443, fuzzHello(f, "team-a.nexmux.test")},
		{2, "pt.nexmux.test", 443, pt},
		{2, "PT.nexmux.test.", 443, pt},
		{2, "pt.nexmux.test", fuzzPortRoute, pt},
		{2, "pt.nexmux.test", 80, pt},
		{2, "10.0.0.1", 443, nil},
		{2, "[2001:db8::1]", 443, nil},
		{2, "::ffff:127.0.0.1", 443, nil},
		{2, "fe80::1%eth0", 443, nil},
		{2, "team-b.nexmux.test", 443, nil},
		{2, "nexmux.test", 443, nil},
		{2, "", fuzzPortRoute, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{0, "\x7f\x00\x00\x01", 443, fuzzHello(f, "")},
		{0, "\x0a\x00\x00\x01", 22, nil},
		{1, string(net.IPv6loopback), 443, nil},
		{1, string(net.IPv6loopback), 1080, nil},
	} {
		f.Add(s.atyp, []byte(s.host), s.port, s.tail)
	}
	f.Fuzz(func(t *testing.T, atyp byte, host []byte, port uint16, tail []byte) {
		in := []byte{5, 1, 0, 5, 1, 0}
		sized := func(n int) []byte { // host cut or zero-padded to n bytes
			b := make([]byte, n)
			copy(b, host)
			return b
		}
		switch atyp % 3 {
		case 0:
			in = append(append(in, atypIPv4), sized(4)...)
		case 1:
			in = append(append(in, atypIPv6), sized(16)...)
		default:
			host = host[:min(len(host), 255)]
			in = append(append(in, atypName, byte(len(host))), host...)
		}
		in = binary.BigEndian.AppendUint16(in, port)
		fx.session(t, false, append(in, tail...), sendHalfClose)
	})
}
