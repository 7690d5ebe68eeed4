package mux_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
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
