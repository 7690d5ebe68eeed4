package mux_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// With --port-tls-only a port route answers plain HTTP with a JSON 400 and
// closes, and still serves TLS.
func TestPortTLSOnly(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, portTLSOnly: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(ln, 8082) })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: nexus.example.com:8082\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"UNSUPPORTED"`) || !resp.Close {
		t.Fatalf("plain HTTP on a TLS-only port: %d %q", resp.StatusCode, body)
	}
	m.waitRefusal(t, c.LocalAddr().String(), "not_tls")

	tc, err := tls.Dial("tcp", ln.Addr().String(), m.tlsConfig("team-a.nexmux.test"))
	if err != nil {
		t.Fatalf("TLS on the port: %v", err)
	}
	defer tc.Close()
	if _, rt, byPort := get(t, tc, "nexus.example.com:8082"); rt != ":8082" || byPort != "true" {
		t.Fatalf("TLS on the port: route %q by port %s", rt, byPort)
	}
}

// A client's first segment may hold less than "PATCH ": telnet typing a
// request, or a PROXY header's segment ending just past it. Plain HTTP
// (or an SSLv2 hello) arriving that way on the TLS listener gets the same
// answer as one arriving whole, not a silent close: the first read alone
// does not say what the client speaks.
func TestNonTLSInShortSegmentsIsRecognised(t *testing.T) {
	m := startMux(t, nil, "", 0)
	sslv2 := []byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}
	sslv2 = append(sslv2, make([]byte, 0x15+0x10)...)
	for _, tc := range []struct {
		name   string
		send   []byte
		cut    int
		reason string
		answer []byte // what must come back first
	}{
		{"GET after one byte", []byte("GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"), 1, "plain HTTP on the TLS listener", []byte("HTTP/1.1 400 ")},
		{"PATCH after three bytes", []byte("PATCH /v2/x HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"), 3, "plain HTTP on the TLS listener", []byte("HTTP/1.1 400 ")},
		{"POST without its space", []byte("POST /v2/x HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"), 4, "plain HTTP on the TLS listener", []byte("HTTP/1.1 400 ")},
		{"SSLv2 hello after one byte", sslv2, 1, "SSLv2-format ClientHello", []byte{21, 3, 3, 0, 2, 2, 70}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.(*net.TCPConn).SetNoDelay(true)
			if _, err := c.Write(tc.send[:tc.cut]); err != nil {
				t.Fatal(err)
			}
			// Long enough for nexmux to read the first piece alone; a
			// loaded machine that reads both at once only makes this
			// case pass without proving anything.
			time.Sleep(300 * time.Millisecond)
			// The rest may meet a closed connection: the answer below
			// says what happened.
			_, _ = c.Write(tc.send[tc.cut:])
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, _ := io.ReadAll(io.LimitReader(c, int64(len(tc.answer))))
			if !bytes.Equal(got, tc.answer) {
				t.Fatalf("got %q back, want %q", got, tc.answer)
			}
			m.waitRefusal(t, c.LocalAddr().String(), "not_tls")
			if !strings.Contains(m.logs.String(), "client="+c.LocalAddr().String()+" ") ||
				!strings.Contains(m.logs.String(), tc.reason) {
				t.Fatalf("no %q refusal in the log:\n%s", tc.reason, m.logs.String())
			}
		})
	}
}

// plainHTTPPorts is a mux with a --port-tls-only port route bound beside
// its TLS listener: the two places plain HTTP is refused with the 400.
func plainHTTPPorts(t *testing.T, handshakeTimeout time.Duration) (m *muxServer, where []struct{ name, addr string }) {
	t.Helper()
	m = startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, portTLSOnly: true, handshakeTimeout: handshakeTimeout})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(ln, 8082) })
	return m, []struct{ name, addr string }{{"TLS listener", m.addr}, {"port route with --port-tls-only", ln.Addr().String()}}
}

// A plain-HTTP client refused while it still sends a body reads the 400:
// closed with the body unread, the connection was reset under the client's
// write, and a client that writes its whole body before reading (Python's
// http.client) or net/http's Transport (docker's, which returns the failed
// write rather than the early answer) never saw it.
func TestPlainHTTPRefusalReadWhileTheBodyIsStillSent(t *testing.T) {
	const size = 4 << 20
	_, where := plainHTTPPorts(t, 0)
	for _, w := range where {
		t.Run(w.name+": whole body, then the answer", func(t *testing.T) {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Small, so the body cannot wait in the client's socket for
			// nexmux to be gone.
			if err := c.(*net.TCPConn).SetWriteBuffer(16 << 10); err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			head := fmt.Sprintf("PUT /v2/app/blobs/uploads/1?digest=sha256:00 HTTP/1.1\r\nHost: team-a.nexmux.test\r\nContent-Length: %d\r\n\r\n", size)
			if _, err := io.WriteString(c, head); err != nil {
				t.Fatal(err)
			}
			chunk := make([]byte, 64<<10)
			for sent := 0; sent < size; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					t.Fatalf("body write after %d of %d bytes: %v", sent, size, err)
				}
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"UNSUPPORTED"`) {
				t.Fatalf("answer %d %q, want the JSON 400", resp.StatusCode, body)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
				t.Fatalf("after the 400: %q, %v; want a clean close", rest, err)
			}
		})
		t.Run(w.name+": net/http client", func(t *testing.T) {
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			for i := range 5 {
				req, err := http.NewRequest(http.MethodPut, "http://"+w.addr+"/v2/app/blobs/uploads/1?digest=sha256:00", bytes.NewReader(make([]byte, size)))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("attempt %d: %v, want the 400", i+1, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"UNSUPPORTED"`) {
					t.Fatalf("attempt %d: answer %d %q, want the JSON 400", i+1, resp.StatusCode, body)
				}
			}
		})
	}
}

// A refused plain-HTTP client that keeps sending holds its connection (and
// its --max-conns place) no longer than the refusal's linger, and never
// past the routing deadline that would have cut it silent.
func TestPlainHTTPRefusalLingerIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name             string
		handshakeTimeout time.Duration
		within           time.Duration // from the dial to the close
	}{
		// Past the 1 s bound with room for a loaded machine, and short of
		// the 5 s routing deadline that would end it otherwise.
		{"the linger's own bound", 5 * time.Second, 4 * time.Second},
		{"the routing deadline, when it comes first", 400 * time.Millisecond, 900 * time.Millisecond},
	} {
		m, where := plainHTTPPorts(t, tc.handshakeTimeout)
		for _, w := range where {
			t.Run(tc.name+", "+w.name, func(t *testing.T) {
				start := time.Now()
				c, err := net.Dial("tcp", w.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "PUT /v2/app/blobs/uploads/1 HTTP/1.1\r\nHost: team-a.nexmux.test\r\nContent-Length: 1000000\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				// The linger's end is when a trickled write fails (the
				// half-close after the 400 lets writes through, so reading
				// alone cannot tell).
				closed := trickle(t, c)
				got, _ := io.ReadAll(c) // the 400, then EOF or a reset
				<-closed
				if d := time.Since(start); d > tc.within {
					t.Errorf("closed %v after the dial, want within %v", d.Round(time.Millisecond), tc.within)
				}
				if !bytes.HasPrefix(got, []byte("HTTP/1.1 400 ")) {
					t.Errorf("client read %q, want the 400", got)
				}
				m.waitRefusal(t, c.LocalAddr().String(), "not_tls")
			})
		}
	}
}

// A request line "PRI * HTTP/1.1" is plain HTTP, not the HTTP/2 preface
// (which goes on "HTTP/2.0\r\n\r\nSM\r\n\r\n"): it gets the JSON 400, not
// HTTP/2 frames.
func TestPlainHTTPPRIRequestIsNoH2CPreface(t *testing.T) {
	_, where := plainHTTPPorts(t, 0)
	for _, w := range where {
		t.Run(w.name, func(t *testing.T) {
			resp, err := plainAnswer(t, w.addr, "PRI * HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n", 10*time.Second)
			if err != nil {
				t.Fatalf("reading the answer: %v, want the JSON 400", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"UNSUPPORTED"`) {
				t.Fatalf("answer %d %q, want the JSON 400", resp.StatusCode, body)
			}
		})
	}
}

// A plain-HTTP request shorter than the HTTP/2 preface is answered as soon
// as its bytes differ from the preface, not once the routing deadline has
// passed.
func TestPlainHTTPShortRequestAnsweredAtOnce(t *testing.T) {
	_, where := plainHTTPPorts(t, time.Minute)
	for _, w := range where {
		t.Run(w.name, func(t *testing.T) {
			resp, err := plainAnswer(t, w.addr, "GET / HTTP/1.0\r\n\r\n", 5*time.Second)
			if err != nil {
				t.Fatalf("reading the answer to an 18-byte request: %v, want the JSON 400 at once", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("answer %d, want 400", resp.StatusCode)
			}
		})
	}
}

// The refusal's linger ends the connection itself, and gives its
// --max-conns place back, within its bound and never past the routing
// deadline, while the client still trickles its body and keeps the
// connection open: the half-close the client reads at once ends nothing.
func TestPlainHTTPRefusalLingerGivesThePlaceBack(t *testing.T) {
	for _, tc := range []struct {
		name             string
		handshakeTimeout time.Duration
		within           time.Duration // from the dial to the place given back
	}{
		// Past the 1 s bound with room for a loaded machine, and short of
		// the 5 s routing deadline that would end it otherwise.
		{"the linger's own bound", 5 * time.Second, 4 * time.Second},
		{"the routing deadline, when it comes first", 400 * time.Millisecond, 900 * time.Millisecond},
	} {
		m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, portTLSOnly: true, handshakeTimeout: tc.handshakeTimeout, maxConns: 100})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m.goServe(func() error { return m.srv.ServePort(ln, 8082) })
		for _, w := range []struct{ name, addr string }{{"TLS listener", m.addr}, {"port route with --port-tls-only", ln.Addr().String()}} {
			t.Run(tc.name+", "+w.name, func(t *testing.T) {
				start := time.Now()
				c, err := net.Dial("tcp", w.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := io.WriteString(c, "PUT /v2/app/blobs/uploads/1 HTTP/1.1\r\nHost: team-a.nexmux.test\r\nContent-Length: 1000000\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				// Read first: the connection is then counted for certain.
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil || resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("answer %v, %v; want the 400", resp, err)
				}
				resp.Body.Close()
				trickle(t, c)
				for {
					open, _ := m.srv.Open()
					if open == 0 {
						break
					}
					if d := time.Since(start); d > tc.within {
						t.Fatalf("%d place(s) still taken %v after the dial, want the refused connection closed within %v", open, d.Round(time.Millisecond), tc.within)
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
	}
}

// trickle writes a byte to c every 20 ms until a write fails (the
// connection's end) or the test ends; the channel closes then.
func trickle(t *testing.T, c net.Conn) <-chan struct{} {
	stop, closed := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-closed })
	go func() {
		defer close(closed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	return closed
}

// plainAnswer sends raw to addr on a new connection and reads the answer
// within d (the connection closes when the test ends).
func plainAnswer(t *testing.T, addr, raw string, d time.Duration) (*http.Response, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return http.ReadResponse(bufio.NewReader(c), nil)
}
