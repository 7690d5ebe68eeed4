package mux_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// memConn is a client connection in memory: the server reads in, cut in
// reads of at most chunk bytes, then EOF; what it writes is kept.
type memConn struct {
	mu     sync.Mutex
	in     []byte
	chunk  int
	out    bytes.Buffer
	once   sync.Once
	closed chan struct{} // closed by Close, when set
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *memConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

func (c *memConn) Close() error {
	c.once.Do(func() {
		if c.closed != nil {
			close(c.closed)
		}
	})
	return nil
}

func (*memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443} }
func (*memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (*memConn) SetDeadline(time.Time) error      { return nil }
func (*memConn) SetReadDeadline(time.Time) error  { return nil }
func (*memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzFirstBytes: whatever a client sends first on the TLS listener, the
// connection is routed or refused, never hung on or panicked over, and
// the refusal is the one its first bytes call for, however they are cut
// into reads: a TLS alert or the handshake for a TLS record; a
// protocol_version alert for an SSLv2 hello; the server preface and a
// GOAWAY for h2c; the Registry-API 400 for another HTTP/1 request line;
// silence for anything else.
func FuzzFirstBytes(f *testing.F) {
	for _, s := range []string{
		"GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x05\x01\x04\x00\x00\x00\x01abcde",
		"PRI * HTTP/2.0\r\n", "PATCH ", "PAT", "SSH-2.0-OpenSSH_9.6\r\n",
		"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10",
		"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
		"\x16\x03\x01\xff\xff", "\x15\x03\x03\x00\x02\x02\x28", "", "\x00",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	m := startMuxWith(f, muxConfig{})
	serve := func(t *testing.T, in []byte, chunk int) []byte {
		c := &memConn{in: bytes.Clone(in), chunk: chunk}
		done := make(chan error, 1)
		go func() { done <- m.srv.ServeConn(c, 0) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("ServeConn(%q): %v", in, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("ServeConn(%q) cut in %d-byte reads still routing after 10 s", in, chunk)
		}
		return c.written()
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		m.logs.Reset() // a line per refusal, kept for nothing here
		out := serve(t, in, len(in)+1)
		if cut > 0 {
			if again := serve(t, in, int(cut%16)+1); !bytes.Equal(again, out) && (len(in) == 0 || in[0] != 0x16) {
				t.Fatalf("%q: answered %q whole, %q cut in %d-byte reads", in, out, again, cut%16+1)
			}
		}
		isAlert := func(b []byte) bool { return len(b) == 7 && b[0] == 0x15 && b[3] == 0 && b[4] == 2 }
		methods := []string{"GET ", "HEAD ", "POST ", "PUT ", "PATCH ", "DELETE ", "OPTIONS ", "CONNECT ", "TRACE ", "PRI "}
		http1 := false
		for _, m := range methods {
			http1 = http1 || bytes.HasPrefix(in, []byte(m))
		}
		switch {
		case len(in) == 0:
			if len(out) != 0 {
				t.Fatalf("nothing sent, %q answered", out)
			}
		case in[0] == 0x16:
			// Refused with an alert, or the handshake goes on (a
			// ServerHello), until the client's EOF.
			if len(out) != 0 && out[0] != 0x15 && out[0] != 0x16 {
				t.Fatalf("%q: answered %q, neither a TLS alert nor a handshake", in, out)
			}
		case in[0]&0x80 != 0 && len(in) >= 3 && in[2] == 1:
			if !isAlert(out) || out[6] != 70 {
				t.Fatalf("SSLv2 hello %q: answered %q, want a protocol_version alert", in, out)
			}
		case bytes.HasPrefix(in, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")):
			settings := []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}
			if !bytes.HasPrefix(out, settings) || len(out) < 9+17 || out[9+3] != 7 || out[9+9+7] != 0xc {
				t.Fatalf("h2c preface %q: answered %q, want SETTINGS and a GOAWAY INADEQUATE_SECURITY", in, out)
			}
		case http1:
			if !strings.HasPrefix(string(out), "HTTP/1.1 400 ") || !strings.Contains(string(out), "HTTPS only") {
				t.Fatalf("HTTP/1 request %q: answered %q, want the 400 saying HTTPS only", in, out)
			}
		default:
			if len(out) != 0 {
				t.Fatalf("garbage %q: answered %q, want the connection closed", in, out)
			}
		}
	})
}

// memListener hands out the connections sent on it.
type memListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }
func (*memListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443} }

// FuzzProxyHeader: on a listener whose peers must send a PROXY header,
// whatever comes first is never hung on or panicked over; without a
// header go-proxyproto reads, the connection is closed unanswered; after
// one, the rest is answered as it is without a header (FuzzFirstBytes's
// refusals), the header's bytes never taken for the client's.
func FuzzProxyHeader(f *testing.F) {
	v2 := "\r\n\r\n\x00\r\nQUIT\n"
	for _, s := range []string{
		"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\nGET /v2/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"PROXY UNKNOWN\r\nSSH-2.0-x\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY TCP4 1.2.3.4\r 5.6.7.8 1 2\r\n",
		v2 + "\x21\x11\x00\x0c\xcb\x00\x71\x07\x7f\x00\x00\x01\x15\xb3\x01\xbbGET / HTTP/1.1\r\n\r\n",
		v2 + "\x20\x00\x00\x00\x80\x2e\x01\x03\x01",
		v2 + "\x21\x31\x00\x00PUT ", v2 + "\x21\x11\x00\x0f\xcb\x00\x71\x07\x7f\x00\x00\x01\x15\xb3\x01\xbb\x04\x00\x00",
		"GET / HTTP/1.1\r\n\r\n", "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
	} {
		f.Add([]byte(s))
	}
	plain := startMuxWith(f, muxConfig{})
	m := startMuxWith(f, muxConfig{proxyFrom: []string{"127.0.0.0/8"}})
	ln := &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
	go func() { _ = m.srv.Serve(ln) }()
	f.Cleanup(func() { ln.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		m.logs.Reset()
		plain.logs.Reset()
		c := &memConn{in: bytes.Clone(in), chunk: len(in) + 1, closed: make(chan struct{})}
		ln.conns <- c
		select {
		case <-c.closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: still open after 10 s", in)
		}
		out := c.written()
		r := bytes.NewReader(in)
		br := bufio.NewReader(r)
		if _, err := proxyproto.Read(br); err != nil {
			if len(out) != 0 {
				t.Fatalf("%q: no header (%v), yet answered %q", in, err, out)
			}
			return
		}
		rest := in[len(in)-r.Len()-br.Buffered():]
		if len(rest) > 0 && rest[0] == 0x16 {
			return // a handshake: its answer is random
		}
		pc := &memConn{in: bytes.Clone(rest), chunk: len(rest) + 1}
		if err := plain.srv.ServeConn(pc, 0); err != nil {
			t.Fatal(err)
		}
		if want := pc.written(); !bytes.Equal(out, want) {
			t.Fatalf("%q: answered %q after the header; %q without one", in, out, want)
		}
	})
}
