package daemon_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/daemon"
)

// The metrics listener closes idle keep-alive connections, and /readyz
// answers a generic body while the log gets the reason.
func TestMetricsListenerIdleTimeoutAndGenericReadyz(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Daemon: daemon.Options{MetricsIdleTimeout: 300 * time.Millisecond}})
	maddr := st.Daemon.Addr("metrics").String()

	c, err := net.Dial("tcp", maddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Idle now: the server must close it; 20 s is the "never" bound.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle metrics connection not closed by the server: %v", err)
	}

	st.Nexus.SetDown(true)
	var body []byte
	waitFor(t, "/readyz to report Nexus down", func() bool {
		resp, err := http.Get("http://" + maddr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	nexusHost := strings.TrimPrefix(strings.TrimPrefix(st.NexusURL, "http://"), "https://")
	_, nexusPort, _ := net.SplitHostPort(strings.SplitN(nexusHost, "/", 2)[0])
	if bytes.Contains(body, []byte(nexusPort)) || bytes.Contains(body, []byte("127.0.0.1")) || bytes.Contains(body, []byte("status")) {
		t.Errorf("/readyz body tells Nexus's address or error: %q", body)
	}
	if !strings.Contains(logs.String(), "not ready") || !strings.Contains(logs.String(), nexusPort) {
		t.Errorf("the reason (with the node) is not logged:\n%s", logs.String())
	}
}

// A request body that never ends neither holds a metrics answer nor its
// connection: none of its endpoints reads one, and net/http would read up
// to 256 KiB of it before answering (until the 10 s read timeout).
// The answer comes at once, with Connection: close, and the connection
// closes by the read timeout.
func TestMetricsListenerStalledBodyClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the metrics read timeout")
	}
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	st := stack.Start(t, stack.Options{Config: cfg, Daemon: daemon.Options{MetricsIdleTimeout: time.Hour}})
	maddr := st.Daemon.Addr("metrics").String()

	for _, body := range []string{"Content-Length: 100\r\n\r\nab", "Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"} {
		t.Run(strings.TrimSuffix(strings.Fields(body)[0], ":"), func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", maddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if _, err := io.WriteString(c, "POST /healthz HTTP/1.1\r\nHost: m\r\n"+body); err != nil {
				t.Fatal(err)
			}
			// Half the read timeout: an answer that waited for the
			// body would come at 10 s.
			c.SetReadDeadline(start.Add(5 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer within 5 s: %v", err)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusMethodNotAllowed || !resp.Close {
				t.Fatalf("%s, close %v, %v; want the 405 whole, with Connection: close", resp.Status, resp.Close, err)
			}
			answered := time.Since(start)
			c.SetReadDeadline(start.Add(30 * time.Second))
			if _, err = io.Copy(io.Discard, br); err != nil {
				t.Fatalf("metrics connection with a stalled body still open after %v: %v", time.Since(start).Round(time.Second), err)
			}
			t.Logf("answered after %v, closed after %v", answered.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		})
	}
}

// Connections to the metrics listener are capped, per address and in all,
// below the descriptors --max-conns leaves free: before, a peer that could
// reach it (any pod, behind the pod IP) held a descriptor per connection,
// for up to the idle timeout, until nexmux could accept no client at all.
// One beyond a cap is closed at once; a scraper from another address is
// still served.
func TestMetricsListenerConnectionsCapped(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	st := stack.Start(t, stack.Options{Config: cfg})
	maddr := st.Daemon.Addr("metrics").String()
	// held dials n connections from the addresses ip gives, each sending
	// half a request, and counts those the server keeps open (it closes
	// one over a cap at once; net/http would hold any for 10 s), once
	// want are left or 5 s have passed.
	held := func(n int, ip func(i int) string, want int) int {
		t.Helper()
		var conns []net.Conn
		for i := range n {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip(i))}}
			c, err := d.Dial("tcp", maddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			io.WriteString(c, "GET /healthz HTTP/1.1\r\n")
			conns = append(conns, c)
		}
		return n - closedOf(conns, n-want, 300*time.Millisecond)
	}
	if kept := held(daemon.MetricsConnsPerClient+10, func(int) string { return "127.0.0.1" }, daemon.MetricsConnsPerClient); kept != daemon.MetricsConnsPerClient {
		t.Fatalf("one address holds %d metrics connections, want %d", kept, daemon.MetricsConnsPerClient)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + maddr + "/healthz")
	if err != nil {
		t.Fatalf("a scraper from another address: %v", err)
	}
	resp.Body.Close()
	hc.CloseIdleConnections()
	if resp.StatusCode != 200 {
		t.Fatalf("a scraper from another address: %d", resp.StatusCode)
	}
	// From many addresses, a few each: never more than the cap in all.
	// Every connection here is a half-sent request, so each one over the
	// cap takes the place of the one that has waited longest.
	others := held(daemon.MetricsMaxConns, func(i int) string { return net.IPv4(127, 0, 3, byte(1+i/4)).String() }, daemon.MetricsMaxConns)
	if others != daemon.MetricsMaxConns {
		t.Fatalf("%d of %d half-sent metrics connections from other addresses held, want the newest %d", others, daemon.MetricsMaxConns, daemon.MetricsMaxConns)
	}
	// Full of half-sent requests from 16 addresses: a kubelet's probe
	// from yet another address is still answered (else its liveness
	// probe fails and the pod restarts, every transfer cut).
	probe := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}
	pc := &http.Client{Transport: &http.Transport{DialContext: probe.DialContext, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err = pc.Get("http://" + maddr + "/healthz")
	if err != nil {
		t.Fatalf("a probe while the listener is full of half-sent requests: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a probe while the listener is full: %d", resp.StatusCode)
	}
}

// Peers that send requests and never read the answers block each answer's
// write for good, and such a connection never waits without a request, so
// the places it holds were never given up: 64 of them (eight addresses)
// shut out every probe until the peers left. Once every place is taken, the
// oldest connection serving a request, open for MetricsEvictAfter at
// least, gives its place to the new one.
func TestMetricsListenerUnreadAnswersDoNotShutOutProbes(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	// No write timeout within the test: the flood must hold every place
	// at once, and under -race it takes longer to fill the buffers than
	// the default gives a stuck answer
	// (TestMetricsListenerUnreadAnswersEndAtWriteTimeout).
	st := stack.Start(t, stack.Options{Config: cfg, Daemon: daemon.Options{MetricsWriteTimeout: time.Hour}})
	maddr := st.Daemon.Addr("metrics").String()
	// Pipelined, more answers than any socket buffers hold.
	flood := []byte(strings.Repeat("GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n", 2000))
	for i := range daemon.MetricsMaxConns {
		ip := net.IPv4(127, 0, 4, byte(1+i/daemon.MetricsConnsPerClient))
		// A small receive buffer, set before the handshake fixes the
		// window, so that nexmux's writes block soon.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		c, err := d.Dial("tcp", maddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		go c.Write(flood) // blocks once nexmux stops reading: never read here
	}
	// Until every place serves a request stuck for MetricsEvictAfter:
	// while answers still flow, a connection between two of them waits
	// without a request, and its place was given up before too. Filling
	// 64 connections' socket buffers with /metrics answers took over 90 s
	// under -race on a loaded two-core machine.
	for deadline := time.Now().Add(240 * time.Second); ; {
		n, newest := st.Daemon.MetricsServing()
		if n == daemon.MetricsMaxConns && newest >= daemon.MetricsEvictAfter {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flood is not stuck after 240 s: %d connections serving, the newest answer for %v", n, newest)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	probe := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}
	pc := &http.Client{Transport: &http.Transport{DialContext: probe.DialContext, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	var err error
	for time.Since(start) < 2*daemon.MetricsEvictAfter+5*time.Second {
		var resp *http.Response
		if resp, err = pc.Get("http://" + maddr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("a probe while every metrics place holds an answer its peer does not read: %v", err)
}

// A peer that pipelines requests and never reads the answers blocks the
// write of one: before the write timeout its connection (and a place of
// MetricsMaxConns) was held for as long as the peer stayed; now it is
// closed once an answer has waited MetricsWriteTimeout, and the peer sees
// the end.
func TestMetricsListenerUnreadAnswersEndAtWriteTimeout(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	const writeTimeout = time.Second
	st := stack.Start(t, stack.Options{Config: cfg, Daemon: daemon.Options{MetricsWriteTimeout: writeTimeout, MetricsIdleTimeout: time.Hour}})
	maddr := st.Daemon.Addr("metrics").String()
	// A small receive buffer, set before the handshake fixes the window,
	// so that nexmux's writes block soon.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", maddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Pipelined, more answers than any socket buffers hold; never read
	// until the end.
	flood := []byte(strings.Repeat("GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n", 2000))
	go c.Write(flood)
	waitFor(t, "the metrics connection to be open", func() bool { return st.Daemon.MetricsOpen() == 1 })
	// 20×: the flood takes a while to fill the buffers on a loaded
	// machine; held, it would stay open as long as the peer does.
	start := time.Now()
	for st.Daemon.MetricsOpen() != 0 {
		if time.Since(start) > 20*writeTimeout {
			t.Fatalf("a metrics connection whose peer never reads its answers is open after %v, write timeout %v", time.Since(start).Round(time.Millisecond), writeTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("closed %v after the connection opened", time.Since(start).Round(time.Millisecond))
	// The peer sees the end: what reached it, then EOF or a reset, not
	// more answers (a connection still served would send them all and
	// then wait, idle, for an hour).
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the peer's connection is still open after %d bytes: %v", n, err)
	}
	t.Logf("the peer read %d bytes, then %v", n, err)
}
