package mux_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// A client that hangs up while its request waits (on a slow Nexus) ends
// the request: net/http's read ahead, which h1Conn runs on a wait of its
// own, sees the FIN.
func TestClientGoneEndsRequest(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}})
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			for range 3 {
				c := d.dial(t)
				servedOnce(t, c)
				if _, err := io.WriteString(c, "GET /until-gone HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
				c.Close()
				select {
				case noticed := <-m.gone:
					if !noticed {
						t.Fatal("the request outlived its client by 10 s")
					}
				case <-time.After(15 * time.Second):
					t.Fatal("the request never ended")
				}
			}
		})
	}
}

// holdConn gathers writes until flush, so that several TLS records reach
// the server in one segment.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  bytes.Buffer
}

func (h *holdConn) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		return h.buf.Write(b)
	}
	return h.Conn.Write(b)
}

func (h *holdConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = false
	_, err := h.Conn.Write(h.buf.Bytes())
	return err
}

// A request line longer than net/http's request buffer, whose first TLS
// record leaves the buffer one byte short and whose rest crypto/tls already
// holds: net/http then asks for one byte, which must be read from
// crypto/tls, not waited for on a socket that has nothing more.
func TestLongRequestLineIsServed(t *testing.T) {
	m := startMuxWith(t, muxConfig{})
	for range 5 {
		raw, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		hc := &holdConn{Conn: raw}
		cfg := m.tlsConfig("team-a.nexmux.test")
		cfg.NextProtos = []string{"http/1.1"}
		cfg.DynamicRecordSizingDisabled = true // one record per write
		c := tls.Client(hc, cfg)
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		br := servedOnce(t, c)
		line := "GET /v2/" + strings.Repeat("a", 4100) + " HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"
		hc.mu.Lock()
		hc.hold = true
		hc.mu.Unlock()
		for _, part := range []string{line[:4095], line[4095:]} {
			if _, err := io.WriteString(c, part); err != nil {
				t.Fatal(err)
			}
		}
		if err := hc.flush(); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("long request line: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		c.Close()
	}
}
