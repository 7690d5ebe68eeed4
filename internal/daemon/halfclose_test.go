package daemon_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// An HTTP/1 client that half-closes once its request is sent (close_notify
// and FIN: HTTP/1.0-style scripts, nc -N) still reads the answer; net/http's
// read ahead sees the EOF and cancels the request's context, which is all
// an HTTP/2 stream reset looks like too. Taken for a client gone when its
// Nexus place came, the request was not sent and net/http filled in an
// empty 200 for it: a manifest GET answered with nothing. The race with
// the read ahead is lost now and then, so the request is sent many times.
func TestHalfClosedHTTP1ClientGetsItsAnswer(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	const n = 200
	wrong := 0
	for i := range n {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
			&tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: "+st.Host("team-a")+"\r\nAuthorization: "+auth+"\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.CloseWrite()
		_ = c.NetConn().(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("request %d: no answer: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "{}" || resp.Header.Get("Docker-Distribution-Api-Version") == "" {
			if wrong == 0 {
				t.Errorf("request %d: %d %q %v, want Nexus's 200 {}", i, resp.StatusCode, b, resp.Header)
			}
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d half-closed clients did not get Nexus's answer", wrong, n)
	}
}

// A half-closed HTTP/1 client whose request waits for a Nexus place: the
// wait ends on the context net/http cancelled at the EOF, and the request
// is given up as its client's. Nothing must then be sent: net/http filled
// in an empty 200 (a HEAD of a blob answered "it exists, 0 bytes").
func TestHalfClosedHTTP1ClientGivenUpGetsNoForgedAnswer(t *testing.T) {
	cfg := confinedRoutes()
	cfg.UpstreamMaxConns = 1
	st := stack.Start(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]
	node.SetBlackhole(true)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	dial := func() *tls.Conn {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
			&tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	req := "HEAD /v2/app/blobs/sha256:" + strings.Repeat("a", 64) + " HTTP/1.1\r\nHost: " + st.Host("team-a") + "\r\nAuthorization: " + auth + "\r\n\r\n"
	// The one place is held by a request Nexus never answers.
	holder := dial()
	if _, err := io.WriteString(holder, req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held request at Nexus", func() bool { return len(node.Requests()) >= 1 })
	c := dial()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	_ = c.NetConn().(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodHead})
	if err == nil && resp.StatusCode == http.StatusOK {
		t.Fatalf("a request nexmux gave up was answered %d %v", resp.StatusCode, resp.Header)
	}
}
