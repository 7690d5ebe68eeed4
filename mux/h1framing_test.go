package mux_test

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"
)

// A request whose body framing two parsers may read differently (both
// Content-Length and Transfer-Encoding, or Transfer-Encoding on HTTP/1.0,
// which net/http ignores) is answered, then the connection closes: RFC 9112
// (6.1, 6.3) requires it, so that bytes a front end took for body are never
// served as a request of their own (request smuggling behind a TLS-ending
// balancer on a port route).
func TestAmbiguousFramingClosesTheConnection(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}})
	const host = "Host: team-a.nexmux.test\r\n"
	const smuggled = "GET /v2/smuggled HTTP/1.1\r\n" + host + "\r\n"
	cases := []struct{ name, req string }{
		{"Content-Length then chunked", "POST /v2/a HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"chunked then Content-Length", "POST /v2/a HTTP/1.1\r\n" + host + "transfer-encoding: chunked\r\ncontent-length: 40\r\n\r\n0\r\n\r\n" + smuggled},
		{"HTTP/1.0 keep-alive with chunked and Content-Length", "POST /v2/a HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled},
		{"HTTP/1.0 keep-alive with chunked", "POST /v2/a HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled},
	}
	for _, d := range h1Dials(t, m) {
		for _, tc := range cases {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				c := d.dial(t)
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, tc.req); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				if resp.Header.Get("X-Path") != "/v2/a" || !resp.Close {
					t.Errorf("first answer: %d X-Path %q Close %v; want /v2/a's, with Connection: close", resp.StatusCode, resp.Header.Get("X-Path"), resp.Close)
				}
				if next, err := http.ReadResponse(br, nil); err == nil {
					t.Fatalf("the connection served another request (X-Path %q) after an ambiguously framed one", next.Header.Get("X-Path"))
				}
			})
		}
	}
}
