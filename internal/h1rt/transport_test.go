package h1rt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext
}

// counted is a test server that counts the connections it accepted.
func counted(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

func newT(t *testing.T) *Transport {
	tr := New(Options{Dial: dialer(), ResponseHeaderTimeout: time.Minute})
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func get(t *testing.T, tr http.RoundTripper, method, url string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, string(b)
}

func (t *Transport) idleCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nIdle
}

func TestKeepAliveReuse(t *testing.T) {
	srv, conns := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "1048576")
			return
		}
		io.WriteString(w, "manifest "+r.URL.Path)
	}))
	tr := newT(t)
	for i := range 20 {
		method := http.MethodGet
		if i%2 == 1 {
			method = http.MethodHead
		}
		resp, b := get(t, tr, method, srv.URL+"/v2/x", nil)
		want := "manifest /v2/x"
		if method == http.MethodHead {
			want = ""
			if resp.ContentLength != 1048576 {
				t.Errorf("HEAD Content-Length %d", resp.ContentLength)
			}
		}
		if resp.StatusCode != 200 || b != want {
			t.Fatalf("%s: %d %q", method, resp.StatusCode, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests used %d connections, want 1", n)
	}
	if n := tr.idleCount(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

// rawServer answers every connection with handle.
func rawServer(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &n
}

func TestInterimResponsesAndTrailers(t *testing.T) {
	url, conns := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"+
				"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Docker-Content-Digest\r\n\r\n"+
				"5\r\nhello\r\n0\r\nDocker-Content-Digest: sha256:abc\r\n\r\n")
		}
	})
	tr := newT(t)
	for range 3 {
		resp, b := get(t, tr, http.MethodGet, url+"/", nil)
		if resp.StatusCode != 200 || b != "hello" {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
		if got := resp.Trailer.Get("Docker-Content-Digest"); got != "sha256:abc" {
			t.Errorf("trailer %q", got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestTooManyInterim(t *testing.T) {
	url, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 10)+"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	tr := newT(t)
	req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, errTooMany1xx) {
		t.Fatalf("err %v, want %v", err, errTooMany1xx)
	}
	if n := tr.idleCount(); n != 0 {
		t.Errorf("%d pooled connections after a refused answer", n)
	}
}

func TestConnectionClose(t *testing.T) {
	srv, conns := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "x")
	}))
	tr := newT(t)
	get(t, tr, http.MethodGet, srv.URL+"/close", nil)
	get(t, tr, http.MethodGet, srv.URL+"/", nil)
	if n := conns.Load(); n != 2 {
		t.Errorf("server's Connection: close: %d connections, want 2", n)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Close = true
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	get(t, tr, http.MethodGet, srv.URL+"/", nil)
	if n := conns.Load(); n != 3 {
		t.Errorf("client's Connection: close: %d connections, want 3", n)
	}
}

// blockingBody is a request body that trickles (a client pushing a large
// layer over a slow link) until closed.
type blockingBody struct {
	release chan struct{}
	closed  atomic.Bool
}

func (b *blockingBody) Read(p []byte) (int, error) {
	select {
	case <-b.release:
		return 0, errors.New("closed")
	case <-time.After(time.Millisecond):
	}
	n := min(len(p), 1024)
	clear(p[:n])
	return n, nil
}

func (b *blockingBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		close(b.release)
	}
	return nil
}

func TestEarlyAnswer(t *testing.T) {
	for _, status := range []int{401, 403, 413} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv, conns := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPatch {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(status)
					io.WriteString(w, `{"errors":[]}`)
					return
				}
				io.WriteString(w, "ok")
			}))
			tr := newT(t)
			body := &blockingBody{release: make(chan struct{})}
			req, _ := http.NewRequest(http.MethodPatch, srv.URL+"/v2/x/blobs/uploads/u", body)
			req.ContentLength = 1 << 30 // a 1 GiB layer, never sent
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != status || string(b) != `{"errors":[]}` {
				t.Fatalf("got %d %q", resp.StatusCode, b)
			}
			// The unfinished body must not leave the connection pooled,
			// and the request body is closed once the write is abandoned.
			get(t, tr, http.MethodGet, srv.URL+"/", nil)
			if n := conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2 (no reuse after an early answer)", n)
			}
			select {
			case <-body.release:
			case <-time.After(30 * time.Second):
				t.Fatal("request body never closed")
			}
		})
	}
}

// A full-duplex exchange: each piece of the request body comes back in the
// response before the next is sent, so neither side is buffered whole.
func TestStreamingBothWays(t *testing.T) {
	srv, _ := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	tr := newT(t)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/", pr)
	req.ContentLength = -1
	piece := make([]byte, 1000)
	rand.Read(piece)
	go pw.Write(piece[:10]) // something for the server to start on
	done := make(chan struct{})
	var resp *http.Response
	var rerr error
	go func() {
		defer close(done)
		resp, rerr = tr.RoundTrip(req)
	}()
	<-done
	if rerr != nil {
		t.Fatal(rerr)
	}
	got := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, piece[:10]) {
		t.Fatalf("first piece: %v", err)
	}
	got = make([]byte, len(piece))
	for i := range 50 {
		go pw.Write(piece)
		if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, piece) {
			t.Fatalf("piece %d: %v", i, err)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("end: %d bytes, %v", len(rest), err)
	}
	resp.Body.Close()
}

func TestLargeBodies(t *testing.T) {
	const size = 64 << 20
	srv, _ := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil || n != size {
				w.WriteHeader(400)
				return
			}
			w.WriteHeader(201)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.CopyN(w, zeros{}, size)
	}))
	tr := newT(t)
	resp, err := tr.RoundTrip(mustReq(t, http.MethodPut, srv.URL+"/", io.LimitReader(zeros{}, size), size))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	resp, err = tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL+"/", nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("pull: %d bytes, %v", n, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func mustReq(t *testing.T, method, url string, body io.Reader, n int64) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.ContentLength = n
	}
	return req
}

func TestCancelClosesConnection(t *testing.T) {
	gone := make(chan struct{})
	url, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.Copy(io.Discard, br) // never answers; returns when the client closes
		close(gone)
	})
	tr := newT(t)
	cause := errors.New("node down")
	ctx, cancel := context.WithCancelCause(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Fatalf("err %v, want the context's cause", err)
	}
	select {
	case <-gone:
	case <-time.After(30 * time.Second):
		t.Fatal("connection left open after cancellation")
	}
}

func TestDialErrorIsDialOpError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := newT(t)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	_, err = tr.RoundTrip(req)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("err %v, want a dial *net.OpError (failover's refused)", err)
	}
}

// A server that closes each connection after one answer without saying
// so: the pooled connection is dead when the next request takes it.
func TestStalePooledConnection(t *testing.T) {
	closed := make(chan struct{}, 1)
	url, conns := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		defer func() { closed <- struct{}{} }()
		defer c.Close()
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	tr := newT(t)
	for i, method := range []string{http.MethodGet, http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete, http.MethodPut} {
		var body io.Reader
		if method == http.MethodPut {
			body = strings.NewReader("manifest")
		}
		if i > 0 {
			<-closed // the server has closed the pooled connection
		}
		resp, b := get(t, tr, method, url+"/", body)
		if resp.StatusCode != 200 || (method != http.MethodHead && b != "ok") {
			t.Fatalf("%s: %d %q", method, resp.StatusCode, b)
		}
		if n := conns.Load(); n != int64(i+1) {
			t.Fatalf("%s: %d connections, want %d", method, n, i+1)
		}
	}
}

// A GET whose pooled connection turns out dead is sent again on a new one.
func TestRetryOnDeadPooledConnection(t *testing.T) {
	var first atomic.Bool
	var accepted atomic.Int64
	url, conns := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		conn := accepted.Add(1)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if first.CompareAndSwap(false, true) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				continue
			}
			// The second request on the first connection: hang up
			// without answering, as a server timing out an idle
			// connection at that moment does.
			if conn == 1 {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew")
		}
	})
	tr := newT(t)
	get(t, tr, http.MethodGet, url+"/", nil)
	resp, b := get(t, tr, http.MethodGet, url+"/", nil)
	if resp.StatusCode != 200 || b != "new" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestIdleTimeoutClosesPooled(t *testing.T) {
	closed := make(chan struct{}, 1)
	url, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				closed <- struct{}{}
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	tr := New(Options{Dial: dialer(), IdleConnTimeout: 50 * time.Millisecond})
	defer tr.CloseIdleConnections()
	get(t, tr, http.MethodGet, url+"/", nil)
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("idle connection never closed")
	}
	if n := tr.idleCount(); n != 0 {
		t.Errorf("%d idle connections after the timeout", n)
	}
}

func TestResponseHeaderTimeout(t *testing.T) {
	url, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.Copy(io.Discard, br)
	})
	tr := New(Options{Dial: dialer(), ResponseHeaderTimeout: 50 * time.Millisecond})
	defer tr.CloseIdleConnections()
	for _, body := range []io.Reader{nil, strings.NewReader("body")} {
		req, _ := http.NewRequest(http.MethodPut, url+"/", body)
		if _, err := tr.RoundTrip(req); !errors.Is(err, errHeaderTimeout) {
			t.Fatalf("err %v, want %v", err, errHeaderTimeout)
		}
	}
}

// The header timeout starts when the body is written: a slow body is not
// cut short by it, and the answer after it keeps its body readable.
func TestHeaderTimeoutAfterBody(t *testing.T) {
	srv, _ := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(201)
		w.(http.Flusher).Flush()
		time.Sleep(100 * time.Millisecond)
		io.WriteString(w, "late body")
	}))
	tr := New(Options{Dial: dialer(), ResponseHeaderTimeout: 50 * time.Millisecond})
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	go func() {
		for range 4 {
			time.Sleep(30 * time.Millisecond)
			pw.Write([]byte("slow"))
		}
		pw.Close()
	}()
	resp, b := get(t, tr, http.MethodPut, srv.URL+"/", pr)
	if resp.StatusCode != 201 || b != "late body" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

func TestEarlyCloseDoesNotDrain(t *testing.T) {
	srv, conns := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(1<<30))
		io.CopyN(w, zeros{}, 1<<30)
	}))
	tr := newT(t)
	resp, err := tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL+"/", nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, resp.Body, 1<<20)
	resp.Body.Close() // must return without reading the rest
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Error("read after Close succeeded")
	}
	if n := tr.idleCount(); n != 0 {
		t.Errorf("%d pooled connections after an early close", n)
	}
	get(t, tr, http.MethodHead, srv.URL+"/", nil)
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

type failingBody struct{ n int }

var errClientGone = errors.New("client went away")

func (b *failingBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, errClientGone
	}
	n := min(len(p), b.n)
	clear(p[:n])
	b.n -= n
	return n, nil
}

func TestRequestBodyError(t *testing.T) {
	srv, _ := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(201)
	}))
	tr := newT(t)
	for _, cl := range []int64{1 << 20, -1} {
		req := mustReq(t, http.MethodPut, srv.URL+"/", &failingBody{n: 100 << 10}, cl)
		_, err := tr.RoundTrip(req)
		if !errors.Is(err, errClientGone) {
			t.Fatalf("Content-Length %d: err %v, want the body's error", cl, err)
		}
	}
	if n := tr.idleCount(); n != 0 {
		t.Errorf("%d pooled connections after failed bodies", n)
	}
}

func TestConcurrent(t *testing.T) {
	srv, conns := counted(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	tr := newT(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				want := fmt.Sprintf("g%d-%d", g, i)
				var body io.Reader
				if i%2 == 0 {
					body = strings.NewReader(want)
				}
				resp, err := tr.RoundTrip(mustReq(t, http.MethodPost, srv.URL+"/", body, int64(len(want))))
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || (body != nil && string(b) != want) {
					t.Errorf("got %q, %v", b, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// A connection whose answer beat its body's last write goes back to
	// the pool a moment later, so a client may dial meanwhile: reuse, not
	// one connection per client, is what is checked.
	if n := conns.Load(); n > 16 {
		t.Errorf("%d connections for 400 requests of 8 concurrent clients", n)
	}
}
