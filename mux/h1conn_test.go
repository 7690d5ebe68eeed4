package mux_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Requests net/http refuses before any handler runs get the Registry-API
// JSON error with net/http's status, over TLS and on a plain-HTTP port
// route, and the refusal is logged; everything else is untouched.
func TestMalformedRequestsGetRegistryErrors(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, maxHeaderBytes: 4 << 10})
	const host = "Host: team-a.nexmux.test\r\n"
	cases := []struct {
		name    string
		req     string
		status  int
		message string
	}{
		{"invalid header name", "GET /v2/ HTTP/1.1\r\n" + host + "Bad Header: x\r\n\r\n", 400, "malformed HTTP request: invalid header name"},
		{"invalid header value", "GET /v2/ HTTP/1.1\r\n" + host + "X-A: a\x01b\r\n\r\n", 400, "malformed HTTP request"},
		{"missing Host", "GET /v2/ HTTP/1.1\r\n\r\n", 400, "missing required Host header"},
		{"two Host headers", "GET /v2/ HTTP/1.1\r\n" + host + host + "\r\n", 400, "malformed HTTP request"},
		{"garbage request line", "GARBAGE\r\n\r\n", 400, "malformed HTTP request"},
		{"HTTP/9.9", "GET /v2/ HTTP/9.9\r\n" + host + "\r\n", 505, "unsupported HTTP version"},
		{"unknown Transfer-Encoding", "POST /v2/ HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n", 501, "unsupported Transfer-Encoding"},
		{"headers too large", "GET /v2/ HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 12<<10) + "\r\n\r\n", 431, "request headers are too large"},
		// net/http answers any Expect but 100-continue itself, with an
		// empty body.
		{"unknown Expect", "PUT /v2/app/manifests/1 HTTP/1.1\r\n" + host + "Expect: 100-continuex\r\nContent-Length: 3\r\n\r\nabc", 417, "unsupported Expect"},
	}
	for _, d := range h1Dials(t, m) {
		// Each refusal is to be logged: at most 10 lines a second are
		// (TestUnparsableRequestLinesLimited), so each kind of connection
		// starts a second of its own.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
		for _, tc := range cases {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				c := d.dial(t)
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, tc.req); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("body: %v", err)
				}
				var e struct {
					Errors []struct{ Code, Message string }
				}
				if err := json.Unmarshal(body, &e); err != nil {
					t.Fatalf("%d %q: not JSON: %v", resp.StatusCode, body, err)
				}
				if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" ||
					resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" || !resp.Close ||
					len(e.Errors) != 1 || e.Errors[0].Code != "UNSUPPORTED" || !strings.Contains(e.Errors[0].Message, tc.message) {
					t.Fatalf("got %d %v %q; want %d with message containing %q", resp.StatusCode, resp.Header, body, tc.status, tc.message)
				}
				// net/http closes after its answer.
				if n, err := c.Read(make([]byte, 1)); err == nil {
					t.Fatalf("connection still open after the refusal (%d more bytes)", n)
				}
				waitLog(t, m, "client="+c.LocalAddr().String()+" ", "request refused")
			})
		}
	}

	// A handler's own plain-text error, and ordinary requests, are untouched;
	// HTTP/1 requests over TLS still carry Request.TLS.
	cfg := m.tlsConfig("team-a.nexmux.test")
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", m.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /v2/ HTTP/1.1\r\n"+host+"\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-TLS") != "team-a.nexmux.test" {
		t.Fatalf("ordinary request: %d, Request.TLS server name %q", resp.StatusCode, resp.Header.Get("X-Request-TLS"))
	}
	io.WriteString(c, "GET /plain-error HTTP/1.1\r\n"+host+"\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || string(body) != "400 Bad Request\n" {
		t.Fatalf("handler's own error was changed: %d %v %q", resp.StatusCode, resp.Header, body)
	}

	// HTTP/2 is served as before (net/http's HTTP/2 server needs the *tls.Conn).
	h2 := &http.Transport{
		TLSClientConfig:   m.tlsConfig("team-a.nexmux.test"),
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, m.addr)
		},
	}
	defer h2.CloseIdleConnections()
	hc := &http.Client{Transport: h2, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "https://team-a.nexmux.test/v2/", nil)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("X-Request-TLS") != "team-a.nexmux.test" {
		t.Fatalf("HTTP/2: proto %s status %d Request.TLS %q", resp.Proto, resp.StatusCode, resp.Header.Get("X-Request-TLS"))
	}
}

// waitLog waits for a log line holding both strings.
func waitLog(t *testing.T, m *muxServer, a, b string) {
	t.Helper()
	eventually(t, func() (bool, string) {
		logs := m.logs.String()
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, a) && strings.Contains(l, b) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no log line with %q and %q:\n%s", a, b, logs)
	})
}

// Only net/http's own answers are rewritten: a response body that holds
// one byte for byte (a blob a client pushed and another pulls) arrives as
// it is, its Content-Length intact, and the connection serves the next
// request.
func TestBodyShapedLikeNetHTTPErrorUntouched(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}})
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for i := range 2 {
				io.WriteString(c, "GET /net-http-shaped-body HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != 200 || string(body) != "blob:"+netHTTPShapedBody {
					t.Fatalf("request %d: %d %q, %v; want 200 and the body as written", i+1, resp.StatusCode, body, err)
				}
			}
			for _, l := range strings.Split(m.logs.String(), "\n") {
				if strings.Contains(l, "client="+c.LocalAddr().String()+" ") && strings.Contains(l, "net/http could not parse") {
					t.Fatalf("a response body was taken for net/http's answer:\n%s", l)
				}
			}
			// net/http's own answer on the same connection is still
			// rewritten once the responses are done.
			io.WriteString(c, "GARBAGE\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("malformed request after the responses: %d %v %q, want the JSON 400", resp.StatusCode, resp.Header, body)
			}
		})
	}
}

// A client chooses how often it sends what net/http cannot parse (on a
// plain-HTTP port route, a few bytes a connection), so those lines are
// limited like refusals: up to 10 a second, the rest counted on the next.
func TestUnparsableRequestLinesLimited(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}})
	dial := h1Dials(t, m)[1].dial
	garbage := func() {
		t.Helper()
		c := dial(t)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GARBAGE\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 400 {
			t.Fatalf("garbage: %v %v, want the JSON 400", resp, err)
		}
		c.Close()
	}
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	// The burst may span more than one second on a loaded machine: each
	// second it touched allows 10 lines.
	first := time.Now().Unix()
	for range 50 {
		garbage()
	}
	seconds := int(time.Now().Unix()-first) + 1
	time.Sleep(1100 * time.Millisecond)
	garbage() // in a second of its own: it logs what went unlogged before
	var lines []string
	unlogged := 0
	eventually(t, func() (bool, string) {
		lines, unlogged = nil, 0
		for _, l := range strings.Split(m.logs.String(), "\n") {
			if strings.Contains(l, "net/http could not parse") {
				lines = append(lines, l)
				if _, v, ok := strings.Cut(l, "unlogged="); ok {
					var n int
					fmt.Sscan(v, &n)
					unlogged += n
				}
			}
		}
		return len(lines)+unlogged >= 51, fmt.Sprintf("%d lines and %d said unlogged for 51 unparsable requests:\n%s", len(lines), unlogged, m.logs.String())
	})
	if len(lines) > seconds*10+1 || len(lines)+unlogged != 51 {
		t.Fatalf("%d lines and %d said unlogged for 51 unparsable requests, 50 of them within %d second(s); want at most %d lines, all 51 accounted for", len(lines), unlogged, seconds, seconds*10+1)
	}
}

// An HTTP/1.0 request with an Expect other than 100-continue gets net/http's
// 417 too, with an "HTTP/1.0" status line (it answers in the request's
// version): the same Registry-API JSON error as over HTTP/1.1.
func TestUnknownExpectHTTP10GetsRegistryError(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}})
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "PUT /v2/app/manifests/1 HTTP/1.0\r\nHost: team-a.nexmux.test\r\nExpect: 100-continuex\r\nContent-Length: 3\r\n\r\nabc"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusExpectationFailed || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), "unsupported Expect") {
				t.Fatalf("got %d %v %q; want 417 with a Registry-API JSON error", resp.StatusCode, resp.Header, body)
			}
		})
	}
}
