package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/porthold"
)

// verifyNoLeaks checks, after everything the test started has shut down,
// that no goroutine outlived it. It must be called before stack.Start:
// cleanups run last-in first-out, so this one runs after the stack's.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// forwarder is a loopback TCP relay between nexmux and the fixture that a
// test can kill (Nexus stops: every connection cut, nothing listening) and
// restart on the same port, or have kill itself after a number of bytes
// went one way (Nexus restarting mid-transfer).
type forwarder struct {
	addr, target string

	mu    sync.Mutex
	ln    net.Listener
	hold  *porthold.Hold // the port while killed: refused, and no one else's
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	cut   chan struct{} // closed when a byte limit killed the relay

	up, down       atomic.Int64 // bytes towards Nexus / towards nexmux
	cutUp, cutDown atomic.Int64 // kill when the counter reaches this (0: never)
}

func startForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	f.serve(ln)
	t.Cleanup(func() {
		f.kill()
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.hold != nil {
			f.hold.Close()
		}
	})
	return f
}

// restart listens again on the same port.
func (f *forwarder) restart(t *testing.T) {
	t.Helper()
	f.kill()
	f.mu.Lock()
	h := f.hold
	f.hold = nil
	f.mu.Unlock()
	var ln net.Listener
	var err error
	if h != nil {
		if ln, err = h.Listen(); err == nil {
			f.serve(ln)
			return
		}
		h.Close()
	}
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restart forwarder on %s: %v", f.addr, err)
	}
	f.serve(ln)
}

// A killed forwarder, like a Nexus whose process is gone, refuses
// connections, and its port stays its own until restart: another test
// binary's listener on it would answer in Nexus's place.
func TestForwarderKillHoldsItsPort(t *testing.T) {
	f := startForwarder(t, "127.0.0.1:1")
	for round := 1; round <= 2; round++ {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		f.kill()
		c.Close()
		if c, err := net.Dial("tcp", f.addr); err == nil {
			c.Close()
			t.Fatalf("round %d: a killed forwarder accepted a connection", round)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("round %d: %v, want ECONNREFUSED", round, err)
		}
		if ln, err := net.Listen("tcp", f.addr); err == nil {
			ln.Close()
			t.Fatalf("round %d: another listener took %s while the forwarder was killed", round, f.addr)
		}
		f.restart(t)
	}
}

func (f *forwarder) serve(ln net.Listener) {
	f.mu.Lock()
	f.ln = ln
	f.cut = make(chan struct{})
	f.cutUp.Store(0)
	f.cutDown.Store(0)
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !f.track(c) {
				c.Close()
				continue
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.pipe(c)
			}()
		}
	}()
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln == nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) pipe(c net.Conn) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", f.target, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	if !f.track(u) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { f.copy(u, c, &f.up, &f.cutUp); done <- struct{}{} }()
	go func() { f.copy(c, u, &f.down, &f.cutDown); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

func (f *forwarder) copy(dst, src net.Conn, n, limit *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if lim := limit.Load(); lim > 0 && n.Load()+int64(k) >= lim {
				m := max(lim-n.Load(), 0)
				_, _ = dst.Write(buf[:m])
				n.Add(m)
				f.closeAll(true)
				return
			}
			if _, err := dst.Write(buf[:k]); err != nil {
				return
			}
			n.Add(int64(k))
		}
		if err != nil {
			return
		}
	}
}

// closeAll stops listening and cuts every connection; it does not wait.
func (f *forwarder) closeAll(byCut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		ln := f.ln
		f.hold, _ = porthold.Stop(ln, func() { ln.Close() }) // nil: restart listens anew
		f.ln = nil
	}
	for c := range f.conns {
		c.Close()
	}
	clear(f.conns)
	if byCut {
		select {
		case <-f.cut:
		default:
			close(f.cut)
		}
	}
}

// kill stops the relay and waits until all its goroutines are gone.
func (f *forwarder) kill() {
	f.closeAll(false)
	f.wg.Wait()
}

// cutAfter arms a kill once n more bytes went towards Nexus (up) or
// towards nexmux (!up).
func (f *forwarder) cutAfter(up bool, n int64) {
	if up {
		f.cutUp.Store(f.up.Load() + n)
	} else {
		f.cutDown.Store(f.down.Load() + n)
	}
}

func (f *forwarder) waitCut(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	ch := f.cut
	f.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("the forwarder was never cut")
	}
}

// faultStack is a stack whose nexmux reaches the fixture through
// nexmux -> forwarder -> front (a wrapping HTTP server) -> fixture.
type faultStack struct {
	*stack.Stack
	fwd   *forwarder
	front *httptest.Server
	wrap  atomic.Pointer[func(http.Handler) http.Handler]
}

func startFaultStack(t *testing.T, cfg config.Config) *faultStack {
	t.Helper()
	verifyNoLeaks(t)
	fs := &faultStack{}
	var nexus atomic.Pointer[http.Handler]
	fs.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := *nexus.Load()
		if wrap := fs.wrap.Load(); wrap != nil {
			h = (*wrap)(h)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(fs.front.Close)
	fs.fwd = startForwarder(t, fs.front.Listener.Addr().String())
	cfg.Upstream = []string{"http://" + fs.fwd.addr}
	fs.Stack = stack.Start(t, stack.Options{Config: cfg})
	var h http.Handler = fs.Nexus
	nexus.Store(&h)
	return fs
}

func (fs *faultStack) setWrap(w func(http.Handler) http.Handler) { fs.wrap.Store(&w) }

// client returns an HTTP client for the stack; h2 picks the protocol.
// Its idle connections are closed when the test ends.
func (fs *faultStack) client(t *testing.T, h2 bool) (*http.Client, *http.Transport) {
	return protoClient(t, fs.Stack, h2)
}

// protoClient returns an HTTP client for st that speaks HTTP/2 when h2,
// else HTTP/1.1 only, with a 60 s timeout. Its idle connections are
// closed when the test ends.
func protoClient(t *testing.T, st *stack.Stack, h2 bool) (*http.Client, *http.Transport) {
	tr := st.Transport()
	if !h2 {
		tr = h1(st)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}, tr
}

// registryError checks a nexmux-made error answer: Docker-style JSON body
// and Retry-After.
func registryError(t *testing.T, resp *http.Response, statuses ...int) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ok := false
	for _, s := range statuses {
		ok = ok || resp.StatusCode == s
	}
	if !ok {
		t.Fatalf("status %d %q, want one of %v", resp.StatusCode, body, statuses)
	}
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code == "" || e.Errors[0].Message == "" {
		t.Errorf("body %q is not a registry error (%v)", body, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After on %d", resp.StatusCode)
	}
}

func authedRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(stack.User, stack.Password)
	return req
}

// uploadBlob pushes n bytes of the deterministic stream as one blob
// (POST, then a monolithic PUT) and returns the final status.
func uploadBlob(t *testing.T, cl *http.Client, base, repoPath string, n int64, digest string) (int, error) {
	resp, err := cl.Do(authedRequest(t, http.MethodPost, base+"/v2/"+repoPath+"/blobs/uploads/", nil))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, fmt.Errorf("start upload: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req := authedRequest(t, http.MethodPut, loc+sep+"digest="+digest, newPRNG(n))
	req.ContentLength = n
	resp, err = cl.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode == http.StatusCreated && got != digest {
		return resp.StatusCode, fmt.Errorf("upload answered digest %q, want %q", got, digest)
	}
	return resp.StatusCode, nil
}

// downloadBlob reads a whole blob and returns its digest and size; after
// is called once the first MiB has arrived.
func downloadBlob(ctx context.Context, t *testing.T, cl *http.Client, url string, after func()) (string, int64, error) {
	req := authedRequest(t, http.MethodGet, url, nil).WithContext(ctx)
	resp, err := cl.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("GET blob: %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.CopyN(h, resp.Body, 1<<20)
	if err == nil && after != nil {
		after()
	}
	if err == nil {
		var m int64
		m, err = io.Copy(h, resp.Body)
		n += m
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, err
}

func TestFaultNexusDown(t *testing.T) {
	fs := startFaultStack(t, confinedRoutes())
	host := fs.Host("team-a")
	img := pushImage(t, fs.Stack, host+"/down/app:1")
	cl, _ := fs.client(t, false)

	// Nexus's process is gone: nothing listens on its port.
	fs.fwd.kill()
	for _, path := range []string{"/v2/", "/v2/down/app/manifests/1"} {
		resp, err := cl.Do(authedRequest(t, http.MethodGet, "https://"+host+path, nil))
		if err != nil {
			t.Fatal(err)
		}
		registryError(t, resp, http.StatusServiceUnavailable)
	}
	// Nexus runs but says it cannot serve: its own 503 reaches the client
	// unchanged.
	fs.fwd.restart(t)
	fs.Nexus.SetDown(true)
	resp, err := cl.Do(authedRequest(t, http.MethodGet, "https://"+host+"/v2/down/app/manifests/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Nexus down: %d, want its 503 passed through", resp.StatusCode)
	}
	fs.Nexus.SetDown(false)
	pullVerify(t, fs.Stack, host+"/down/app:1", img)
}

func TestFaultNexusRestartMidUpload(t *testing.T) {
	fs := startFaultStack(t, confinedRoutes())
	base := "https://" + fs.Host("team-a")
	const size = 16 << 20
	digest := digestOf(size)
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			cl, _ := fs.client(t, h2)
			// Nexus goes away after 2 MiB of the layer reached it.
			fs.fwd.cutAfter(true, 2<<20)
			code, err := uploadBlob(t, cl, base, "cut/up", size, digest)
			fs.fwd.waitCut(t)
			t.Logf("upload cut mid-way: status %d, err %v", code, err)
			if err == nil && code < 500 {
				t.Fatalf("upload cut mid-way answered %d without error", code)
			}
			fs.fwd.restart(t)
			// The client retries the whole upload.
			if code, err := uploadBlob(t, cl, base, "cut/up", size, digest); err != nil || code != http.StatusCreated {
				t.Fatalf("retried upload: %d %v", code, err)
			}
			got, n, err := downloadBlob(ctxT(t), t, cl, base+"/v2/cut/up/blobs/"+digest, nil)
			if err != nil || got != digest || n != size {
				t.Fatalf("blob after retried upload: %s (%d bytes) %v, want %s", got, n, err, digest)
			}
		})
	}
	// Whole images still go through.
	img := pushImage(t, fs.Stack, fs.Host("team-a")+"/cut/app:1")
	pullVerify(t, fs.Stack, fs.Host("team-a")+"/cut/app:1", img)
}

func TestFaultNexusRestartMidDownload(t *testing.T) {
	fs := startFaultStack(t, confinedRoutes())
	base := "https://" + fs.Host("team-a")
	const size = 32 << 20
	digest := digestOf(size)
	cl, _ := fs.client(t, false)
	if code, err := uploadBlob(t, cl, base, "cut/down", size, digest); err != nil || code != http.StatusCreated {
		t.Fatalf("upload: %d %v", code, err)
	}
	url := base + "/v2/cut/down/blobs/" + digest
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			cl, _ := fs.client(t, h2)
			// Nexus goes away after 4 MiB of the layer left it.
			fs.fwd.cutAfter(false, 4<<20)
			got, n, err := downloadBlob(ctxT(t), t, cl, url, nil)
			fs.fwd.waitCut(t)
			t.Logf("download cut mid-way: %d of %d bytes, err %v", n, size, err)
			if err == nil {
				t.Fatalf("download cut mid-way ended without error (%d bytes, %s)", n, got)
			}
			if n >= size {
				t.Fatalf("read all %d bytes although Nexus was cut after 4 MiB", n)
			}
			fs.fwd.restart(t)
			got, n, err = downloadBlob(ctxT(t), t, cl, url, nil)
			if err != nil || got != digest || n != size {
				t.Fatalf("retried download: %s (%d bytes) %v, want %s", got, n, err, digest)
			}
		})
	}
}

func TestFaultSlowNexusRouteDoesNotBlockOthers(t *testing.T) {
	// team-b's Nexus holds its requests until the test lets them go,
	// not for a fixed time a loaded machine's team-a work could outlast.
	// If team-a's work waits for team-b, the watchdog lets team-b go
	// after giveUp and the test fails.
	const giveUp = 30 * time.Second
	release := make(chan struct{})
	var once sync.Once
	var watchdog atomic.Bool
	letGo := func() { once.Do(func() { close(release) }) }
	var heldB atomic.Int64
	fs := startFaultStack(t, confinedRoutes())
	t.Cleanup(letGo) // before the fixture's Close, which waits for handlers
	img := pushImage(t, fs.Stack, fs.Host("team-a")+"/fast/app:1")
	fs.setWrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/repository/team-b/") {
				heldB.Add(1)
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	type result struct {
		code int
		err  error
	}
	const slow = 16
	results := make(chan result, slow)
	for i := 0; i < slow; i++ {
		go func() {
			cl, _ := fs.client(t, i%2 == 0)
			resp, err := cl.Get("https://" + fs.Host("team-b") + "/v2/")
			r := result{err: err}
			if err == nil {
				r.code = resp.StatusCode
				resp.Body.Close()
			}
			results <- r
		}()
	}
	waitFor(t, "team-b's requests held at its Nexus", func() bool { return heldB.Load() >= slow })
	start := time.Now()
	dog := time.AfterFunc(giveUp, func() { watchdog.Store(true); letGo() })
	// Meanwhile team-a is served, over both protocols, including a pull.
	for _, h2 := range []bool{false, true} {
		cl, _ := fs.client(t, h2)
		for i := 0; i < 10; i++ {
			resp, err := cl.Get("https://" + fs.Host("team-a") + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("team-a /v2/: %d", resp.StatusCode)
			}
		}
	}
	pullVerify(t, fs.Stack, fs.Host("team-a")+"/fast/app:1", img)
	dog.Stop()
	if watchdog.Load() {
		t.Fatalf("team-a took %s: it waited for team-b's held Nexus", time.Since(start).Round(time.Millisecond))
	}
	select {
	case r := <-results:
		t.Fatalf("a held team-b request finished before team-a's work: %+v", r)
	default:
	}
	t.Logf("team-a served in %s while team-b waited", time.Since(start).Round(time.Millisecond))
	letGo()
	for i := 0; i < slow; i++ {
		if r := <-results; r.err != nil || r.code != http.StatusUnauthorized {
			t.Errorf("held team-b request once let go: %d %v", r.code, r.err)
		}
	}
}

// blobWatch reports, for each blob GET the fixture serves, when and how
// it ended: the handler stopped (its write failed) or its request context
// ended, and how much of the body it had written by then.
type blobWatch struct {
	ended chan blobEnd
}

type blobEnd struct {
	written   int64
	ctxFirst  bool          // the context ended while the handler still ran
	ctxDoneIn time.Duration // from the handler's start; 0: never within 10 s
}

type countingRW struct {
	http.ResponseWriter
	n atomic.Int64
}

// Write paces the body after its first 2 MiB (1 ms per 32 KiB): the
// rest of a 32 MiB layer then takes about a second to write whatever the
// socket buffers could absorb, so "stopped before the end" only depends on
// nexmux cancelling, not on how much loopback buffering there is.
func (c *countingRW) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		k := min(len(p), 32<<10)
		if c.n.Load() > 2<<20 {
			time.Sleep(time.Millisecond)
		}
		n, err := c.ResponseWriter.Write(p[:k])
		c.n.Add(int64(n))
		total += n
		if err != nil {
			return total, err
		}
		p = p[k:]
	}
	return total, nil
}

func (b *blobWatch) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		cw := &countingRW{ResponseWriter: w}
		var returned atomic.Bool
		var ctxFirst atomic.Bool
		ctxDone := make(chan time.Duration, 1)
		// Stays registered after the handler returns: net/http ends the
		// context once the response is over, whoever ended it.
		context.AfterFunc(r.Context(), func() {
			ctxFirst.Store(!returned.Load())
			ctxDone <- time.Since(start)
		})
		next.ServeHTTP(cw, r)
		returned.Store(true)
		written := cw.n.Load()
		go func() {
			e := blobEnd{written: written}
			select {
			case e.ctxDoneIn = <-ctxDone:
				e.ctxFirst = ctxFirst.Load()
			case <-time.After(10 * time.Second):
			}
			b.ended <- e
		}()
	})
}

func TestFaultClientVanishesMidDownload(t *testing.T) {
	fs := startFaultStack(t, confinedRoutes())
	base := "https://" + fs.Host("team-a")
	const size = 32 << 20
	digest := digestOf(size)
	up, _ := fs.client(t, false)
	if code, err := uploadBlob(t, up, base, "gone/app", size, digest); err != nil || code != http.StatusCreated {
		t.Fatalf("upload: %d %v", code, err)
	}
	bw := &blobWatch{ended: make(chan blobEnd, 1)}
	fs.setWrap(bw.wrap)

	for _, mode := range []string{"h1 close", "h2 close", "h2 cancel stream"} {
		t.Run(mode, func(t *testing.T) {
			h2 := strings.HasPrefix(mode, "h2")
			cl, tr := fs.client(t, h2)
			var conn atomic.Pointer[net.Conn]
			dial := tr.DialContext
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err == nil {
					conn.Store(&c)
				}
				return c, err
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var vanished time.Time
			_, n, err := downloadBlob(ctx, t, cl, base+"/v2/gone/app/blobs/"+digest, func() {
				vanished = time.Now()
				if mode == "h2 cancel stream" {
					cancel()
				} else {
					(*conn.Load()).Close()
				}
			})
			if err == nil || n >= size {
				t.Fatalf("client read %d bytes, err %v: the transfer was not interrupted", n, err)
			}
			// The fixture's handler stops early: nexmux cancelled the
			// upstream request (its context ends, or its next write
			// fails on the connection nexmux closed), it did not keep
			// streaming the layer into nowhere.
			select {
			case e := <-bw.ended:
				t.Logf("Nexus side: stopped %s after the client left, %d of %d bytes written, context done after %s (before the handler returned: %v)",
					time.Since(vanished).Round(time.Millisecond), e.written, size, e.ctxDoneIn.Round(time.Millisecond), e.ctxFirst)
				if e.written >= size {
					t.Fatalf("the upstream request was not cancelled: the handler wrote all %d bytes", e.written)
				}
				if e.ctxDoneIn == 0 {
					t.Fatal("the upstream request's context never ended")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream request is still running 10 s after the client left")
			}
			if h2 && mode == "h2 cancel stream" {
				// The connection itself survives a cancelled stream.
				resp, err := cl.Get(base + "/v2/")
				if err != nil {
					t.Fatalf("after a cancelled stream: %v", err)
				}
				resp.Body.Close()
			}
		})
	}
}
