package mux

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
)

// probeConn records every read net/http makes on an HTTP/1 wrapper: whether
// h1Conn takes it for net/http's read ahead, and whether it is (net/http's
// backgroundRead on the stack).
type probeConn struct {
	net.Conn
	bg    *bgRead
	mu    sync.Mutex
	reads []probeRead
}

type probeRead struct {
	len, cap              int
	readAhead, background bool
}

func (p *probeConn) Read(b []byte) (int, error) {
	r := probeRead{len: len(b), cap: cap(b), readAhead: p.bg.seen && p.bg.isReadAhead(b), background: calledFrom("net/http.(*connReader).backgroundRead")}
	p.mu.Lock()
	p.reads = append(p.reads, r)
	p.mu.Unlock()
	return p.Conn.Read(b)
}

func calledFrom(fn string) bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if f.Function == fn {
			return true
		}
		if !more {
			return false
		}
	}
}

// probeListener serves accepted connections to net/http through h1Conn
// (TLS or plain), each behind a probeConn.
type probeListener struct {
	net.Listener
	tls   *tls.Config // nil: plain HTTP
	mu    sync.Mutex
	conns []*probeConn
}

func (l *probeListener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var h *h1Conn
	var c net.Conn
	if l.tls != nil {
		th := newH1TLSConn(tls.Server(raw, l.tls), connLog{})
		h, c = &th.h1Conn, th
	} else {
		h = &h1Conn{Conn: raw}
		c = h
	}
	setupRelease(&h.rel, raw, 0)
	p := &probeConn{Conn: c, bg: &h.bg}
	l.mu.Lock()
	l.conns = append(l.conns, p)
	l.mu.Unlock()
	return p, nil
}

func (l *probeListener) reads() []probeRead {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []probeRead
	for _, p := range l.conns {
		p.mu.Lock()
		all = append(all, p.reads...)
		p.mu.Unlock()
	}
	return all
}

// h1Client drives requests the ways net/http's reads differ: keep-alive
// GETs, pipelined GETs, a chunked upload in small pieces, and (TLS) a
// request line longer than net/http's request buffer whose first TLS record
// leaves that buffer one byte short, so that net/http asks for one byte
// into it.
func h1Client(t *testing.T, c net.Conn, isTLS bool) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expect := func(n int) {
		t.Helper()
		for range n {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
	}
	const get = "GET /v2/ HTTP/1.1\r\nHost: h\r\n\r\n"
	for range 5 {
		send(get)
		expect(1)
	}
	send(get + get + get)
	expect(3)
	send("POST /v2/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
	for i := range 40 {
		send(fmt.Sprintf("%x\r\n%s\r\n", i+1, strings.Repeat("b", i+1)))
	}
	send("0\r\n\r\n")
	expect(1)
	if isTLS {
		line := "GET /v2/" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: h\r\n\r\n"
		send(line[:netHTTPReadBuf-1])
		send(line[netHTTPReadBuf-1:])
		expect(1)
	}
	send(get)
	expect(1)
}

// h1Conn takes a read for net/http's read ahead exactly when it is one, so
// it never waits on the socket for bytes net/http asked for, and it does
// recognise every read ahead of this net/http: a Go release that changes
// either fails here.
func TestReadAheadIsRecognised(t *testing.T) {
	if !canPeek {
		t.Skip("no socket wait here")
	}
	ca, err := certs.NewCA("bgread test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueTLS("h")
	if err != nil {
		t.Fatal(err)
	}
	for _, isTLS := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", isTLS), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			pl := &probeListener{Listener: ln}
			if isTLS {
				pl.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, "ok")
			})}
			go srv.Serve(pl)
			defer srv.Close()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if isTLS {
				// One TLS record per write, whatever its size.
				c = tls.Client(c, &tls.Config{ServerName: "h", RootCAs: ca.Pool(), DynamicRecordSizingDisabled: true})
			}
			h1Client(t, c, isTLS)

			var background, oneByteInBuffer int
			for i, r := range pl.reads() {
				if r.readAhead != r.background {
					t.Errorf("read %d (len %d, cap %d): taken for the read ahead %v, is it %v", i, r.len, r.cap, r.readAhead, r.background)
				}
				if r.background {
					background++
				} else if r.len == 1 {
					oneByteInBuffer++
				}
			}
			if background < 5 {
				t.Errorf("%d read aheads, want one per request that left none pending", background)
			}
			if isTLS && oneByteInBuffer == 0 {
				t.Error("no one-byte read into net/http's buffer: the long request line did not test that case")
			}
		})
	}
}
