package daemon_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A SOCKS5 session still waiting for its CONNECT when the drain starts
// carries no request and could not get a stream any more (the router
// refuses a CONNECT once draining): the drain closes it at once, as
// net/http does an idle keep-alive connection, instead of waiting for
// its negotiation deadline (--handshake-timeout, here far beyond the
// drain) and holding the exit.
func TestDrainClosesPendingSOCKS5Sessions(t *testing.T) {
	cfg := teamRoutes()
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.HandshakeTimeout = 10 * time.Minute
	st, _ := logStackWith(t, stack.Options{Config: cfg})
	socks := st.Daemon.Addr("socks5").String()
	c, err := net.DialTimeout("tcp", socks, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	// The drain's time is the test's bound: with the session left open,
	// Shutdown runs it out.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = st.Daemon.Shutdown(ctx)
	if ctx.Err() != nil {
		t.Error("the drain ran out its time with only a SOCKS5 session waiting for its CONNECT; want it closed at the drain's start")
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(m[:1]); err == nil {
		t.Error("pending SOCKS5 session still open after the drain")
	}
}

// HTTP/2 requests still waiting for Nexus when --drain-timeout ends, one
// held at Nexus and others queued for its one place, are answered 503
// with Retry-After: 1 on their still-open connection, as over HTTP/1,
// before the connection closes: the client is told to retry, not left
// with a broken connection, and the access line's 503 is what it got.
func TestHTTP2RequestsCutAtDrainEndGet503(t *testing.T) {
	const n = 3
	cfg := teamRoutes()
	cfg.DrainTimeout = time.Second
	cfg.UpstreamMaxConns = 1
	st, _ := logStackWith(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]
	cl := &http.Client{Transport: st.Transport()}
	type answer struct {
		status, retry string
		err           error
	}
	answers := make(chan answer, n+1)
	get := func(path string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+path, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := cl.Do(req)
		if err != nil {
			answers <- answer{err: err}
			return
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		answers <- answer{status: resp.Proto + " " + resp.Status, retry: resp.Header.Get("Retry-After"), err: err}
	}
	node.SetBlackhole(true)
	held := len(node.Requests())
	go get("/v2/app/manifests/held")
	waitFor(t, "the first request held at Nexus", func() bool { return len(node.Requests()) > held })
	for i := range n {
		go get("/v2/queued/manifests/" + strconv.Itoa(i))
	}
	waitFor(t, "the queued requests in nexmux", func() bool { return st.Daemon.Handling() == n+1 })
	st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal, 1))
	for range n + 1 {
		select {
		case a := <-answers:
			if a.err != nil || a.status != "HTTP/2.0 503 Service Unavailable" || a.retry != "1" {
				t.Errorf("request cut at the drain's end: %q (Retry-After %q), err %v; want HTTP/2.0 503 with Retry-After: 1", a.status, a.retry, a.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a client's request was still open after the drain")
		}
	}
}

// A SOCKS5 stream cut at the drain's end is nexmux's doing: its request
// gets the access line saying so and its client the 503 (Retry-After: 1)
// the router answers, and the session no "socks5: ..." error line of its
// own, which reads as a broken client. The SOCKS listener's drain closed
// the client's socket itself as the drain ended, before the router's
// answer and close of the stream came through.
func TestSOCKS5StreamCutAtDrainEndNotLoggedAsBroken(t *testing.T) {
	cfg := teamRoutes()
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.DrainTimeout = time.Second
	st, logs := logStackWith(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]
	socks := st.Daemon.Addr("socks5").String()
	const streams = 4
	answers := make(chan string, streams)
	node.SetBlackhole(true)
	held := len(node.Requests())
	for range streams {
		code, c := socksHandshake(t, socks, 1, "team-a.nexmux.test", 443)
		if code != 0 {
			t.Fatalf("CONNECT: reply %d", code)
		}
		defer c.Close()
		var bound [6]byte // the reply's IPv4 address and port
		if _, err := io.ReadFull(c, bound[:]); err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Time{})
		tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.CA.Pool(), NextProtos: []string{"http/1.1"}})
		if _, err := fmt.Fprintf(tc, "GET /v2/app/manifests/held HTTP/1.1\r\nHost: team-a.nexmux.test\r\nAuthorization: Basic %s\r\n\r\n",
			base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))); err != nil {
			t.Fatal(err)
		}
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				answers <- err.Error()
				return
			}
			resp.Body.Close()
			answers <- resp.Status + " Retry-After " + resp.Header.Get("Retry-After")
		}()
	}
	waitFor(t, "the requests held at Nexus", func() bool { return len(node.Requests()) >= held+streams })
	st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal, 1))
	if lines := logLines(logs, "msg=request", "drain"); len(lines) != streams {
		t.Errorf("%d access lines saying the drain cut the request, want %d", len(lines), streams)
	}
	if lines := logLines(logs, "socks5: "); len(lines) != 0 {
		t.Errorf("SOCKS5 sessions cut by the drain's end logged as broken: %q", lines)
	}
	for range streams {
		if a := <-answers; a != "503 Service Unavailable Retry-After 1" {
			t.Errorf("SOCKS5 client of a request cut at the drain's end got %q, want its 503 with Retry-After: 1", a)
		}
	}
}
