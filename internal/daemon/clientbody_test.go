package daemon_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A broken request body is the client's fault: answered 400 (never 200,
// never 502 with Retry-After), logged as a client error, and Nexus never
// accepts the truncated body.
func TestBrokenClientBodyAnswered400(t *testing.T) {
	// Nexus here is a recorder that parses each request off the wire and
	// reports whether its body arrived complete: what Jetty would decide.
	complete := make(chan bool, 16)
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, err = io.Copy(io.Discard, req.Body)
				complete <- err == nil
				if err == nil {
					io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
				}
			}()
		}
	}()
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Config: teamRoutes(), Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Upstreams: func(string) []string { return []string{"http://" + up.Addr().String()} }})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	host := st.Host("team-a-push")
	for _, tc := range []struct {
		name string
		// head is the request head after the request line; body follows.
		head, body string
		halfClose  bool
	}{
		{"short body, half-close", "Content-Length: 1000\r\n", strings.Repeat("a", 10), true},
		{"malformed chunked", "Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n", false},
		{"chunked, aborted mid-chunk", "Transfer-Encoding: chunked\r\n", "400\r\nabc", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v2/app/blobs/uploads/0b7c4f5e-1111-2222-3333-444455556666"
			d := &net.Dialer{Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", st.Addr, &tls.Config{ServerName: "team-a-push.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(c, "PATCH "+path+" HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: "+auth+
				"\r\nContent-Type: application/octet-stream\r\n"+tc.head+"\r\n"+tc.body)
			if tc.halfClose {
				c.CloseWrite()
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Retry-After") != "" {
				t.Fatalf("%d Retry-After %q %s; want 400", resp.StatusCode, resp.Header.Get("Retry-After"), b)
			}
			select {
			case ok := <-complete:
				if ok {
					t.Error("Nexus received the broken body as a complete one")
				}
			case <-time.After(10 * time.Second):
				// Never forwarded at all: fine too.
			}
		})
	}
	if lines := logLines(logs, "client request body failed"); len(lines) == 0 {
		t.Error("no client-error log line")
	}
	if lines := logLines(logs, "upstream request failed"); len(lines) > 0 {
		t.Errorf("a client's fault logged as Nexus's: %q", lines)
	}
}
