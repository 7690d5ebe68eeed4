//go:build unix

package daemon_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/nexmux/nexmux/internal/testnet"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// raiseNoFile makes sure the process may hold need descriptors.
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur >= need {
		return
	}
	lim.Cur = min(need, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < need {
		t.Skipf("RLIMIT_NOFILE %d (max %d), need %d: %v", lim.Cur, lim.Max, need, err)
	}
}

// slowloris is one kind of attacker connection. dribble is what it sends,
// one byte per interval; setup turns a TCP connection into the state it
// dribbles from (nil: raw TCP).
type slowloris struct {
	name     string
	dribble  []byte
	setup    func(net.Conn) (net.Conn, error)
	sem      chan struct{} // bounds concurrent setups (nil: none)
	bound    time.Duration // the server must cut it within this long of setup
	opened   atomic.Int64
	cut      atomic.Int64
	failed   atomic.Int64 // could not even connect / set up
	mu       sync.Mutex
	longest  time.Duration
	overlong int
}

// run keeps one attacker connection open at a time until stop closes:
// when nexmux cuts it, it reconnects.
func (s *slowloris) run(addr string, interval time.Duration, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if s.sem != nil {
			// Taken before dialing: a connection waiting for its turn
			// would be cut by the handshake timeout before its hello.
			s.sem <- struct{}{}
		}
		release := func() {
			if s.sem != nil {
				<-s.sem
			}
		}
		raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			release()
			s.failed.Add(1)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		c := raw
		if s.setup != nil {
			c, err = s.setup(raw)
		}
		release()
		if err != nil {
			raw.Close()
			s.failed.Add(1)
			continue
		}
		start := time.Now()
		s.opened.Add(1)
		closed := make(chan struct{})
		go func() {
			// nexmux never answers a slowloris: the read ends when
			// nexmux closes the connection.
			_, _ = io.Copy(io.Discard, c)
			close(closed)
		}()
		cut := false
	dribble:
		for i := 0; ; i++ {
			_, _ = c.Write(s.dribble[i%len(s.dribble) : i%len(s.dribble)+1])
			select {
			case <-closed:
				cut = true
				break dribble
			case <-stop:
				break dribble
			case <-time.After(interval):
			}
		}
		alive := time.Since(start)
		raw.Close()
		<-closed
		s.mu.Lock()
		if cut {
			s.cut.Add(1)
			s.longest = max(s.longest, alive)
		}
		if alive > s.bound {
			s.overlong++
		}
		s.mu.Unlock()
	}
}

func (s *slowloris) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%s: opened=%d cut=%d setup_failed=%d longest=%s over_bound=%d",
		s.name, s.opened.Load(), s.cut.Load(), s.failed.Load(), s.longest.Round(time.Millisecond), s.overlong)
}

// legitPushPull pushes a small image over a fresh client transport and
// pulls it back, verifying every digest.
func legitPushPull(ctx context.Context, st *stack.Stack, tr http.RoundTripper, where string) error {
	img, err := random.Image(16<<10, 2)
	if err != nil {
		return err
	}
	r := refNoT(where)
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password})}
	if err := remote.Write(r, img, opts...); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	got, err := remote.Image(r, opts...)
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	if err := validate.Image(got); err != nil {
		return fmt.Errorf("pulled image does not verify: %w", err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		return fmt.Errorf("pulled %s, pushed %s", gd, wd)
	}
	return nil
}

func TestSlowlorisBoundedResources(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 slowloris connections skipped in -short mode")
	}
	const (
		perKind   = 500
		interval  = 500 * time.Millisecond
		handshake = 2 * time.Second
		header    = 3 * time.Second
		attackFor = 10 * time.Second
		heapLimit = 200 << 20
	)
	// Each attacker holds a client and a server descriptor.
	raiseNoFile(t, 4*perKind+1024)
	cfg := confinedRoutes()
	cfg.HandshakeTimeout = handshake
	cfg.HeaderTimeout = header
	st := stack.Start(t, stack.Options{Config: cfg})

	// Warm up every lazily created piece (pools, h2 server, fixture
	// storage) before the baseline, then drop the client's connections.
	warm := st.Transport()
	if err := legitPushPull(ctxT(t), st, warm, st.Host("team-a")+"/warm/app:1"); err != nil {
		t.Fatal(err)
	}
	warm.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	baseFDs, baseG := openFDs(t), runtime.NumGoroutine()
	heap := watchHeap()

	hello := testnet.ClientHello(t, &tls.Config{ServerName: "team-a.nexmux.test"})
	// TLS handshakes are the costly part on 2 cores under -race: the
	// header attackers skip the post-quantum key share and at most 32
	// handshake at once.
	helloKind := &slowloris{name: "clienthello", dribble: hello, bound: handshake + 3*time.Second}
	headerKind := &slowloris{
		name:    "headers",
		dribble: []byte("GET /v2/ HTTP/1.1\r\nHost: " + st.Host("team-a") + "\r\nX-Slow: " + strings.Repeat("z", 4096)),
		sem:     make(chan struct{}, 32),
		bound:   header + 3*time.Second,
		setup: func(raw net.Conn) (net.Conn, error) {
			c := tls.Client(raw, &tls.Config{
				ServerName:       "team-a.nexmux.test",
				RootCAs:          st.Pool(),
				NextProtos:       []string{"http/1.1"},
				CurvePreferences: []tls.CurveID{tls.X25519},
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return c, c.HandshakeContext(ctx)
		},
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < perKind; i++ {
		for _, k := range []*slowloris{helloKind, headerKind} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k.run(st.Addr, interval, stop)
			}()
		}
	}
	// Let the attackers pile up, then serve a real client meanwhile.
	time.Sleep(handshake)
	legit := st.Transport()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	legitStart := time.Now()
	err := legitPushPull(ctx, st, legit, st.Host("team-a")+"/legit/app:1")
	cancel()
	legitTook := time.Since(legitStart)
	legit.CloseIdleConnections()
	if err != nil {
		t.Errorf("legitimate push+pull during the attack: %v (after %s)", err, legitTook.Round(time.Millisecond))
	}
	peakFDs := openFDs(t)
	if d := attackFor - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	close(stop)
	wg.Wait()
	growth := heap.growth()
	t.Logf("legit push+pull took %s during the attack; fds baseline=%d during=%d; heap growth %d MiB",
		legitTook.Round(time.Millisecond), baseFDs, peakFDs, growth>>20)
	t.Log(helloKind)
	t.Log(headerKind)

	for _, k := range []*slowloris{helloKind, headerKind} {
		if k.cut.Load() < perKind {
			t.Errorf("%s: nexmux cut only %d connections", k.name, k.cut.Load())
		}
		if k.overlong > 0 {
			t.Errorf("%s: %d connections lived longer than %s", k.name, k.overlong, k.bound)
		}
	}
	if growth > heapLimit {
		t.Errorf("heap grew by %d MiB during the attack (limit %d MiB)", growth>>20, heapLimit>>20)
	}
	// Our side is closed; nexmux's side closes by its own deadlines.
	deadline := time.Now().Add(15 * time.Second)
	for {
		fds, g := openFDs(t), runtime.NumGoroutine()
		if fds <= baseFDs+16 && g <= baseG+32 {
			t.Logf("recovered: fds %d (baseline %d), goroutines %d (baseline %d)", fds, baseFDs, g, baseG)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the attack: %d open fds (baseline %d), %d goroutines (baseline %d)", fds, baseFDs, g, baseG)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dialHTTP1 opens an HTTP/1.1 TLS connection for serverName.
func dialHTTP1(st *stack.Stack, serverName string) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr, &tls.Config{
		ServerName: serverName, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"},
	})
}

// getV2On sends GET /v2/ on an open connection and returns the status.
func getV2On(c net.Conn, br *bufio.Reader, host string) (int, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestMaxConns(t *testing.T) {
	const limit = 50
	logs := &logBuffer{}
	cfg := confinedRoutes()
	cfg.MaxConns = limit
	st := stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	host := st.Host("team-a")

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < limit; i++ {
		c, err := dialHTTP1(st, "team-a.nexmux.test")
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, limit, err)
		}
		held = append(held, c)
		// Each is really being served (and so counted).
		if code, err := getV2On(c, bufio.NewReader(c), host); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("connection %d: %d %v", i+1, code, err)
		}
	}

	// The 51st is closed at once: no handshake timeout, no TLS.
	c, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	took := time.Since(begin)
	c.Close()
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection %d was not closed (still open after %s)", limit+1, took)
	case err == nil:
		t.Fatalf("connection %d: read %d bytes", limit+1, n)
	case took > time.Second:
		t.Errorf("connection %d closed only after %s", limit+1, took)
	}
	// A TLS client sees a failed handshake, not a hang.
	if tc, err := dialHTTP1(st, "team-a.nexmux.test"); err == nil {
		tc.Close()
		t.Errorf("connection %d: TLS handshake succeeded over the limit", limit+1)
	}
	waitFor(t, "log line reason=max_conns", func() bool {
		return strings.Contains(logs.String(), "reason=max_conns")
	})

	// The held connections still work.
	if code, err := getV2On(held[0], bufio.NewReader(held[0]), host); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("held connection after refusals: %d %v", code, err)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	// Once nexmux has seen them close, new connections are accepted.
	waitFor(t, "a new connection after the others closed", func() bool {
		c, err := dialHTTP1(st, "team-a.nexmux.test")
		if err != nil {
			return false
		}
		defer c.Close()
		code, err := getV2On(c, bufio.NewReader(c), host)
		return err == nil && code == http.StatusUnauthorized
	})
	// And there is room for a full 50 again.
	waitFor(t, "room for 50 connections again", func() bool {
		defer func() {
			for _, c := range held {
				c.Close()
			}
			held = nil
		}()
		for i := 0; i < limit; i++ {
			c, err := dialHTTP1(st, "team-a.nexmux.test")
			if err != nil {
				return false
			}
			held = append(held, c)
		}
		return true
	})
}

// refNoT parses a reference outside the test goroutine.
func refNoT(s string) name.Reference {
	r, err := name.ParseReference(s)
	if err != nil {
		panic(err)
	}
	return r
}

// An HTTP/2 connection that sends the preface and then no complete request
// (nothing, or a header block it never ends) is closed after
// --header-timeout, as an HTTP/1 one is; it stayed until --idle-timeout,
// four times as long by default, for a slowloris over HTTP/2.
func TestHTTP2ConnectionWithoutRequestClosedAtHeaderTimeout(t *testing.T) {
	cfg := teamRoutes()
	cfg.HeaderTimeout = 500 * time.Millisecond
	st := stack.Start(t, stack.Options{Config: cfg})
	for _, tail := range []string{
		"", // nothing after the preface
		// HEADERS for stream 1 without END_HEADERS, and no CONTINUATION.
		"\x00\x00\x01\x01\x01\x00\x00\x00\x01\x82",
	} {
		c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Fatalf("negotiated %q, want h2", p)
		}
		// The preface, an empty SETTINGS frame, then tail.
		if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"+tail); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("tail %q: HTTP/2 connection without a request still open after 10 s (--header-timeout 500ms)", tail)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("tail %q: closed after %v, want about --header-timeout", tail, el)
		}
	}
}
