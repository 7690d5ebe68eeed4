package mux_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/sni"
)

// readUntilClosed reads what the server sends until it closes the
// connection; a connection left open fails the test.
func readUntilClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection not closed")
	}
	return got
}

// TestRefusals: every way a connection is refused before HTTP, over real
// TCP: what the client sees (a TLS alert it can name, or a close), and the
// one log line and count with the reason.
func TestRefusals(t *testing.T) {
	m := startMux(t, nil, "", 0)
	decodeError := []byte{21, 3, 3, 0, 2, 2, byte(sni.AlertDecodeError)}
	for _, tc := range []struct {
		name   string
		reason string
		// client talks to the server; it returns what it saw.
		client func(t *testing.T, c net.Conn) string
		want   string
	}{
		{"unknown server name", mux.ReasonUnknownSNI, func(t *testing.T, c net.Conn) string {
			return tls.Client(c, m.tlsConfig("nobody.nexmux.test")).Handshake().Error()
		}, "remote error: tls: unrecognized name"},
		{"no server name and no default route", mux.ReasonNoSNI, func(t *testing.T, c net.Conn) string {
			return tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake().Error()
		}, "remote error: tls: unrecognized name"},
		{"handshake record that is not a hello", mux.ReasonMalformed, func(t *testing.T, c net.Conn) string {
			_, _ = c.Write([]byte{22, 3, 1, 0, 4, 2, 0, 0, 0})
			if got := readUntilClosed(t, c); !bytes.Equal(got, decodeError) {
				return "got " + string(got)
			}
			return "decode_error alert"
		}, "decode_error alert"},
		{"client rejects the certificate", mux.ReasonHandshake, func(t *testing.T, c net.Conn) string {
			return tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test"}).Handshake().Error()
		}, "certificate signed by unknown authority"},
		{"TLS 1.1 only", mux.ReasonHandshake, func(t *testing.T, c net.Conn) string {
			cfg := m.tlsConfig("team-a.nexmux.test")
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return tls.Client(c, cfg).Handshake().Error()
		}, "protocol version not supported"},
		{"no common application protocol", mux.ReasonHandshake, func(t *testing.T, c net.Conn) string {
			cfg := m.tlsConfig("team-a.nexmux.test")
			cfg.NextProtos = []string{"smtp"}
			return tls.Client(c, cfg).Handshake().Error()
		}, "no application protocol"},
		{"plain HTTP on the TLS port", mux.ReasonNotTLS, func(t *testing.T, c net.Conn) string {
			_, _ = c.Write([]byte("GET /v2/ HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n"))
			return string(readUntilClosed(t, c))
		}, `400 Bad Request`},
		{"plain HTTP on the TLS port: a Registry-API error", mux.ReasonNotTLS, func(t *testing.T, c net.Conn) string {
			_, _ = c.Write([]byte("HEAD /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\n\r\n"))
			return string(readUntilClosed(t, c))
		}, `{"errors":[{"code":"UNSUPPORTED","message":"nexmux: this port serves HTTPS only"`},
		{"SSLv2-format hello", mux.ReasonNotTLS, func(t *testing.T, c net.Conn) string {
			// openssl's SSLv2-compatible ClientHello offering TLS 1.2.
			_, _ = c.Write([]byte{0x80, 0x2e, 0x01, 0x03, 0x03, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10})
			return fmt.Sprintf("% x", readUntilClosed(t, c))
		}, fmt.Sprintf("% x", []byte{21, 3, 3, 0, 2, 2, byte(sni.AlertProtocolVersion)})},
		{"SSH on the TLS port", mux.ReasonNotTLS, func(t *testing.T, c net.Conn) string {
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
			return string(readUntilClosed(t, c)) + "closed"
		}, "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if got := tc.client(t, c); !strings.Contains(got, tc.want) {
				t.Fatalf("client saw %q, want %q", got, tc.want)
			}
			m.waitRefusal(t, c.LocalAddr().String(), tc.reason)
		})
	}
}

// A client that stalls inside its hello is cut at the handshake timeout.
func TestRefusalTimeout(t *testing.T) {
	m := startMuxWith(t, muxConfig{handshakeTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello := testnet.ClientHello(t, m.tlsConfig("team-a.nexmux.test"))
	if _, err := c.Write(hello[:10]); err != nil {
		t.Fatal(err)
	}
	if got := readUntilClosed(t, c); len(got) != 0 {
		t.Fatalf("got %q back", got)
	}
	m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonTimeout)
}

// Health checks connect and close: counted, but not worth an info line,
// from a trusted load balancer too, whose checks (AWS NLB's, HAProxy's)
// send no PROXY header.
func TestClosedBeforeSendingIsQuiet(t *testing.T) {
	for name, proxyFrom := range map[string][]string{"direct": nil, "trusted balancer": {"127.0.0.0/8"}} {
		t.Run(name, func(t *testing.T) {
			m := startMux(t, proxyFrom, "", 0)
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			client := c.LocalAddr().String()
			c.Close()
			deadline := time.Now().Add(10 * time.Second)
			for m.refused.get(mux.ReasonClosed) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the close was not counted:\n%s", m.logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if strings.Contains(m.logs.String(), client) {
				t.Fatalf("a health check was logged at info:\n%s", m.logs.String())
			}
		})
	}
	// A silent one is still cut at the deadline, and says so.
	m := startMuxWith(t, muxConfig{proxyFrom: []string{"127.0.0.0/8"}, handshakeTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := readUntilClosed(t, c); len(got) != 0 {
		t.Fatalf("got %q back", got)
	}
	m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonTimeout)
}

// A listener bound to a legacy port with no --port route refuses what it
// accepts.
func TestRefusalNoPortRoute(t *testing.T) {
	m := startMux(t, nil, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(ln, 8099) })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /v2/ HTTP/1.1\r\nHost: nexus:8099\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := readUntilClosed(t, c); len(got) != 0 {
		t.Fatalf("got %q back", got)
	}
	m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonNoPortRoute)
}

// Past --max-conns a connection is closed at once and counted; the one
// held open is served normally.
func TestRefusalMaxConns(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 1})
	held, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// The held connection counts once the server has accepted it: wait
	// until a second one is refused.
	deadline := time.Now().Add(10 * time.Second)
	for m.refused.get(mux.ReasonMaxConns) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no connection refused past max-conns")
		}
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		readUntilClosed(t, c)
		c.Close()
	}
	// The refusal is counted before its line is logged.
	for !strings.Contains(m.logs.String(), "too many connections") {
		if time.Now().After(deadline) {
			t.Fatalf("no max-conns line:\n%s", m.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	tc := tls.Client(held, m.tlsConfig("team-a.nexmux.test"))
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("the held connection: %v", err)
	}
}

// passthroughDialRefused sends a ClientHello for the passthrough route,
// whose backend refuses the connection, and checks the internal_error
// alert that comes back; the connection is closed at the test's end.
func passthroughDialRefused(t *testing.T, m *muxServer) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(testnet.ClientHello(t, m.tlsConfig("pt.nexmux.test"))); err != nil {
		t.Fatal(err)
	}
	if got, want := readUntilClosed(t, c), []byte{21, 3, 3, 0, 2, 2, byte(sni.AlertInternalError)}; !bytes.Equal(got, want) {
		t.Fatalf("got % x back, want an internal_error alert (% x)", got, want)
	}
	return c
}

// A passthrough backend that refuses the connection: the client gets an
// internal_error alert, and the refusal is logged with its reason.
func TestRefusalPassthroughDial(t *testing.T) {
	m := startMux(t, nil, testnet.DeadAddr(t), 0)
	c := passthroughDialRefused(t, m)
	m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonUpstream)
}

// A passthrough stream refused for its two extra --max-conns places is a
// max_conns refusal like one refused at accept, not also a connection
// given its route: each connection is in one count, routed or refused.
func TestPassthroughOverMaxConnsNotRouted(t *testing.T) {
	be := backend(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	m := startMuxWith(t, muxConfig{passthrough: be, maxConns: 4})
	stream := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(testnet.ClientHello(t, m.tlsConfig("pt.nexmux.test"))); err != nil {
			t.Fatal(err)
		}
		return c
	}
	stream() // three places of four
	eventually(t, func() (bool, string) {
		return m.routed.get("pt.nexmux.test") == 1, fmt.Sprintf("%d routed", m.routed.get("pt.nexmux.test"))
	})
	c := stream() // accepted into the fourth, but a stream needs three
	if got, want := readUntilClosed(t, c), []byte{21, 3, 3, 0, 2, 2, byte(sni.AlertInternalError)}; !bytes.Equal(got, want) {
		t.Fatalf("got % x back, want an internal_error alert (% x)", got, want)
	}
	if r, n := m.routed.get("pt.nexmux.test"), m.refused.get(mux.ReasonMaxConns); r != 1 || n != 1 {
		t.Fatalf("%d streams counted routed and %d refused max_conns; want 1 and 1", r, n)
	}
}

// A server name longer than any host name is logged cut, with its length:
// a flood of such hellos must not copy kilobytes into every line.
func TestLongServerNameLoggedCut(t *testing.T) {
	m := startMux(t, nil, "", 0)
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	name := strings.Repeat("abcdefgh.", 1000) + "nexmux.test"
	_ = tls.Client(c, m.tlsConfig(name)).Handshake()
	m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonUnknownSNI)
	for _, l := range strings.Split(m.logs.String(), "\n") {
		if strings.Contains(l, "client="+c.LocalAddr().String()+" ") {
			if len(l) > 1000 || !strings.Contains(l, fmt.Sprintf("... (%d bytes)", len(name))) {
				t.Fatalf("refusal line of %d bytes: %.400s", len(l), l)
			}
		}
	}
}

// pacedConn writes in segments of one MSS with a pause between them, as a
// hello larger than one segment arrives over a real network.
type pacedConn struct{ net.Conn }

func (c pacedConn) Write(p []byte) (int, error) {
	const mss = 1448
	for off := 0; off < len(p); off += mss {
		if off > 0 {
			time.Sleep(time.Millisecond)
		}
		if _, err := c.Conn.Write(p[off:min(off+mss, len(p))]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// A ClientHello over sni.MaxHelloBytes is refused as soon as its length
// says so, with a decode_error alert: the client must read that alert, not
// a reset, although it is still sending the rest of its hello then.
func TestOversizedHelloGetsItsAlert(t *testing.T) {
	m := startMux(t, nil, "", 0)
	protos := []string{"http/1.1"}
	for len(protos)*200 < 2*sni.MaxHelloBytes {
		protos = append(protos, strings.Repeat("p", 200))
	}
	cfg := m.tlsConfig("team-a.nexmux.test")
	cfg.NextProtos = protos
	for i := range 5 {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		err = tls.Client(pacedConn{c}, cfg).Handshake()
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "remote error: tls: error decoding message") {
			t.Fatalf("attempt %d: client saw %v, want the decode_error alert", i+1, err)
		}
		m.waitRefusal(t, c.LocalAddr().String(), mux.ReasonMalformed)
	}
}

// A refusal alert is followed at once by the close, --max-conns or
// --max-conns-per-client set or not: a client that reads on after the
// alert (until the close) is not kept waiting for the refusal's linger.
// The time is taken from before the hello is sent, so a close that waited
// for the linger takes AlertLingerTime at least, however fast or slow the
// machine; a prompt one only has to beat that.
func TestRefusalAlertClosesAtOnceUnderLimits(t *testing.T) {
	// Recorded once: no key generation inside the measured time.
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "nobody.nexmux.test"})
	alert := []byte{21, 3, 3, 0, 2, 2, byte(sni.AlertUnrecognizedName)}
	for _, mc := range []muxConfig{{}, {maxConns: 100}, {maxConnsPerClient: 10}, {maxConns: 100, proxyFrom: []string{"127.0.0.1/32"}}} {
		m := startMuxWith(t, mc)
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if mc.proxyFrom != nil {
			// The PROXY reader stands between the refusal and the socket.
			_, _ = io.WriteString(c, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n")
		}
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		// The client keeps its side open: only nexmux's FIN ends this.
		got := readUntilClosed(t, c)
		d := time.Since(start)
		if !bytes.Equal(got, alert) {
			t.Fatalf("max-conns %d, per client %d: read %x, want the unrecognized_name alert %x", mc.maxConns, mc.maxConnsPerClient, got, alert)
		}
		if d >= mux.AlertLingerTime {
			t.Errorf("max-conns %d, per client %d: the close came %v after the hello, want at once, not after the refusal's %v linger", mc.maxConns, mc.maxConnsPerClient, d.Round(time.Millisecond), mux.AlertLingerTime)
		}
		c.Close()
	}
}

// A client refused for an unreachable passthrough backend that keeps its
// connection open, silent, holds it (and its --max-conns place) no longer
// than the alert's linger: this refusal has no routing deadline to bound it.
func TestPassthroughRefusalLingerEndsWhileTheClientStays(t *testing.T) {
	m := startMuxWith(t, muxConfig{passthrough: testnet.DeadAddr(t), maxConns: 10})
	passthroughDialRefused(t, m) // open, silent, until the test ends
	// The client neither sends nor closes: the connection must still end.
	deadline := time.Now().Add(5 * time.Second)
	for {
		open, _ := m.srv.Open()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connection(s) still open 5s after the refusal, want the refused one closed once its linger ends", open)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A client at its --max-conns-per-client refused with an alert, that
// reads it, closes and retries at once finds its slot: the refused
// connection reads on only while the client keeps its side open, however
// soon nexmux reads the client's FIN.
func TestRetryAfterRefusalAlertFindsItsSlot(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 64, maxConnsPerClient: 1})
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "nowhere.nexmux.example"})
	turnedAway := 0
	const tries = 100
	for range tries {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(hello)
		// The alert whole, then nexmux's FIN.
		if b, err := io.ReadAll(c); err != nil || len(b) != 7 {
			turnedAway++
		}
		c.Close()
	}
	if turnedAway != 0 {
		t.Fatalf("%d of %d tries turned away: a client that read its refusal and closed was refused when it retried at once (%d refused as %s)", turnedAway, tries, m.refused.get(mux.ReasonPerClient), mux.ReasonPerClient)
	}
}

// A client at its --max-conns-per-client whose refused connection gives
// its slot back by itself (nexmux read the client's FIN) after the client's
// next connection was found at the limit, but before the reclaim looked
// for slots to give back, is not refused for a slot already free.
func TestRetryFindsTheSlotItsRefusalGaveBackMeanwhile(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 64, maxConnsPerClient: 1})
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "nowhere.nexmux.example"})
	first, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_ = first.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = first.Write(hello)
	// The alert whole, then nexmux's FIN: the refused connection reads on,
	// holding the client's slot, until the client closes.
	if b, err := io.ReadAll(first); err != nil || len(b) != 7 {
		t.Fatalf("refusal %x, %v; want the 7-byte alert, then the end", b, err)
	}
	var once sync.Once
	mux.SetRefusedSlot(t, func() {
		once.Do(func() {
			first.Close()
			for deadline := time.Now().Add(5 * time.Second); m.srv.RefusingConns() != 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the closed client's refused connection still reads on (%d)", m.srv.RefusingConns())
					return
				}
			}
		})
	})
	second, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = second.Write(hello)
	if b, err := io.ReadAll(second); err != nil || len(b) != 7 {
		t.Fatalf("retry: %x, %v; want the 7-byte alert: the client's slot was free when the retry was looked at (%d refused as %s)", b, err, m.refused.get(mux.ReasonPerClient), mux.ReasonPerClient)
	}
}
