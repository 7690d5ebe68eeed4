package mux_test

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
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

// The close is for ambiguous framing only: pipelined requests with chunked
// bodies (extensions, trailers) and Content-Length bodies, whose bytes look
// like such headers, are all answered on one connection that stays open;
// an ambiguous request after them still closes it.
func TestUnambiguousFramingKeepsTheConnection(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}})
	const host = "Host: team-a.nexmux.test\r\n"
	lookalike := "\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	reqs := []string{
		"PATCH /v2/1 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
			"3;ext=1\r\nabc\r\n" + strconv.FormatInt(int64(len(lookalike)), 16) + "\r\n" + lookalike + "\r\n0\r\nX-Trailer: Content-Length\r\n\r\n",
		"PUT /v2/2 HTTP/1.1\r\n" + host + "Content-Length: " + strconv.Itoa(len(lookalike)+1) + "\r\n\r\n" + lookalike + "x",
		// A CRLF after a POST body is one net/http skips (RFC 9112 2.2).
		"POST /v2/3 HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n\r\n",
		"GET /v2/4 HTTP/1.1\r\n" + host + "\r\n",
	}
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			// Pipelined in one write, then the same again one request a write.
			for round, writes := range [][]string{{strings.Join(reqs, "")}, reqs} {
				if round == 0 {
					io.WriteString(c, writes[0])
				}
				for i := range reqs {
					if round == 1 {
						io.WriteString(c, writes[i])
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("round %d request %d: %v", round, i+1, err)
					}
					io.Copy(io.Discard, resp.Body)
					if want := "/v2/" + strconv.Itoa(i+1); resp.Header.Get("X-Path") != want || resp.Close {
						t.Fatalf("round %d: %d X-Path %q Close %v; want %s's answer, connection kept", round, resp.StatusCode, resp.Header.Get("X-Path"), resp.Close, want)
					}
				}
			}
			io.WriteString(c, "POST /v2/5 HTTP/1.1\r\n"+host+"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get("X-Path") != "/v2/5" || !resp.Close {
				t.Fatalf("ambiguous request after the others: X-Path %q Close %v; want /v2/5's, with Connection: close", resp.Header.Get("X-Path"), resp.Close)
			}
		})
	}
}
