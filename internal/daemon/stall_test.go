package daemon_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/testnet"
)

// Over HTTP/2 a client that stops reading does not block a socket write: it
// stops opening the stream's flow-control window, and the handler's write
// waits for window instead. --send-timeout bounds that wait too: the stream
// is reset and its Nexus connection let go, while the client's connection
// (and its other streams) stays.
func TestHTTP2ClientThatStopsReadingIsCut(t *testing.T) {
	cfg := teamRoutes()
	cfg.SendTimeout = 300 * time.Millisecond
	st, logs := logStack(t, cfg)
	dig := seedLayer(t, st, "team-a-hosted", "big", 32<<20)
	cl := &http.Client{Transport: st.Transport()}
	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+path, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s over %s", path, resp.Status, resp.Proto)
		}
		return resp
	}
	resp := get("/v2/big/blobs/" + dig)
	defer resp.Body.Close()
	// Read nothing until the response has ended (its access line is
	// written), however long a loaded machine takes: the client's stream
	// window (4 MiB) fills and nexmux's write waits; reading any earlier
	// would open the window.
	waitLogFor(t, logs, 30*time.Second, "msg=request", "path=/v2/big/blobs/")
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= 32<<20 {
		t.Fatalf("read %d bytes, %v: want the stream reset short of the 32 MiB blob", n, err)
	}
	// The same connection still serves.
	ok := get("/v2/")
	ok.Body.Close()
}

// stallingConn stops reading from the socket once stall is set, until
// resume is closed: a client that stops reading at the TCP level.
type stallingConn struct {
	net.Conn
	stall  atomic.Bool
	resume chan struct{}
}

func (c *stallingConn) Read(b []byte) (int, error) {
	if c.stall.Load() {
		<-c.resume
	}
	return c.Conn.Read(b)
}

// An HTTP/2 client that opens its windows wide and then stops reading the
// socket blocks nexmux's connection writer, not a stream's window: the
// stream's write deadline then only queues a reset behind the blocked
// write, so the stream, its Nexus connection and the client's connection
// were held for good. --send-timeout bounds the socket write too.
func TestHTTP2ClientThatStopsReadingTheSocketIsCut(t *testing.T) {
	cfg := teamRoutes()
	cfg.SendTimeout = 300 * time.Millisecond
	logs := &testnet.Buffer{}
	st := stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	dig := seedLayer(t, st, "team-a-hosted", "big", 32<<20)
	var sc *stallingConn
	tr := st.Transport()
	tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 20, MaxReceiveBufferPerStream: 64 << 20}
	tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		// A small receive buffer, set before connecting, fills at once.
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return nil, err
		}
		sc = &stallingConn{Conn: c, resume: make(chan struct{})}
		return sc, nil
	}
	defer tr.CloseIdleConnections()
	resp := getBigBlob(t, st, tr, dig, 2)
	defer resp.Body.Close()
	sc.stall.Store(true)
	defer close(sc.resume)
	// The response ends (its access line is written) while the client
	// still reads nothing.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "path=/v2/big/blobs/") {
		if time.Now().After(deadline) {
			t.Fatal("blob response still held 5 s after the client stopped reading its socket (--send-timeout 300ms)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --send-timeout is nginx's send_timeout with a floor: a client is cut
// only when it takes less than 64 KiB in that long. Over HTTP/1.1 it was a deadline on each
// write of up to 512 KiB, so a client on a thin link that reads steadily
// but slower than 512 KiB per --send-timeout (~9 KB/s at the default 60 s)
// was cut while it made progress.
func TestHTTP1SlowButMovingClientIsNotCut(t *testing.T) {
	cfg := teamRoutes()
	cfg.SendTimeout = time.Second
	st := stack.Start(t, stack.Options{Config: cfg})
	// Past what loopback buffers take at once (about 4 MiB), so that
	// nexmux's writes wait on the client's reads.
	dig := seedLayer(t, st, "team-a-hosted", "big", 6<<20)
	tr := h1(st)
	tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		// A small receive buffer, set before connecting: nexmux's writes
		// wait on the client's reads rather than fill loopback buffers.
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		}}
		return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	}
	defer tr.CloseIdleConnections()
	resp := getBigBlob(t, st, tr, dig, 1)
	defer resp.Body.Close()
	// 64 KiB every 200 ms (~320 KiB/s): once the buffers are full each
	// 512 KiB write takes about 1.6 s, past the 1 s timeout, yet no
	// 200 ms pass without progress.
	var n int64
	buf := make([]byte, 64<<10)
	for {
		m, err := io.ReadFull(resp.Body, buf)
		n += int64(m)
		if (err == io.EOF || err == io.ErrUnexpectedEOF) && n == resp.ContentLength {
			break
		}
		if err != nil {
			t.Fatalf("client reading steadily, never a second without progress, cut after %d of %d bytes: %v", n, resp.ContentLength, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// smallRcvDial dials addr over TCP with a small receive buffer, set before
// connecting, so that nexmux's writes wait on the client's reads.
func smallRcvDial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	return d.DialContext(ctx, "tcp", addr)
}

// With --send-timeout following progress (below TLS), an HTTP/1.1 client
// that stops reading a blob is still cut within about --send-timeout, and
// the response (its Nexus connection) ends; so is one that pipelines
// requests and reads none of the answers.
func TestHTTP1ClientThatStopsReadingIsCut(t *testing.T) {
	cfg := teamRoutes()
	cfg.SendTimeout = 300 * time.Millisecond
	logs := &testnet.Buffer{}
	st := stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	dig := seedLayer(t, st, "team-a-hosted", "big", 32<<20)
	smallDig := seedLayer(t, st, "team-a-hosted", "small", 16<<10) // a small answer, below batchMin
	dial := func(t *testing.T) *tls.Conn {
		raw, err := smallRcvDial(context.Background(), st.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{ServerName: "team-a." + stack.Domain, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		t.Cleanup(func() { c.Close() })
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	auth := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password)) + "\r\n"
	host := "Host: " + st.Host("team-a") + "\r\n"

	t.Run("blob", func(t *testing.T) {
		c := dial(t)
		path := "/v2/big/blobs/" + dig
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\n"+host+auth+"\r\n"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), "path="+path) {
			if time.Now().After(deadline) {
				t.Fatal("blob response still held 10 s after its client stopped reading (--send-timeout 300ms)")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		const requests = 2000
		c := dial(t)
		go func() {
			_, _ = io.WriteString(c, strings.Repeat("GET /v2/small/blobs/"+smallDig+" HTTP/1.1\r\n"+host+auth+"\r\n", requests))
		}()
		// Reads nothing until a write was cut (its access line has a
		// reason), however long a loaded machine takes: reading any
		// earlier would let the blocked write through.
		waitLogFor(t, logs, time.Minute, "msg=request", "path=/v2/small/blobs/", "reason=")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if err, ok := err.(net.Error); ok && err.Timeout() {
			t.Fatalf("connection still open after %d bytes of answers to %d requests: the stalled write was never cut", n, requests)
		}
	})
}

// getBigBlob gets team-a's big blob dig through tr, which must speak HTTP
// major version proto, and returns the 200 response, its body unread.
func getBigBlob(t *testing.T, st *stack.Stack, tr http.RoundTripper, dig string, proto int) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/big/blobs/"+dig, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != proto || resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("got %s over %s, want 200 over HTTP/%d", resp.Status, resp.Proto, proto)
	}
	return resp
}
