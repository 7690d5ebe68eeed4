// Package testnet has the network helpers tests share: a loopback
// listener, a loopback TCP pair and a real client's first flight.
package testnet

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/lograte"
)

// Pair returns both ends of a real loopback TCP connection; both are
// closed when the test ends. Both carry a 30 s deadline, so code under
// test that wrongly waits fails instead of hanging the test binary
// (tests of deadlines set their own).
func Pair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept() // a failed accept shows as nil below
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		client.Close()
		t.Fatal("testnet: accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	deadline := time.Now().Add(30 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	return client, server
}

// Listen returns a TCP listener on a free loopback port, closed when the
// test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Serve runs serve on every connection ln accepts, each in a goroutine of
// its own and closed when serve returns, until ln is closed.
func Serve(ln net.Listener, serve func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
}

// ClientHello returns the first flight a real crypto/tls client with cfg
// sends: every byte it writes before it first reads.
func ClientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	rc := &recordingConn{}
	if err := tls.Client(rc, cfg).Handshake(); !errors.Is(err, errReadRefused) {
		t.Fatalf("testnet: client handshake: got %v, want the refused read", err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.buf) < 5 || rc.buf[0] != 0x16 {
		t.Fatalf("testnet: no ClientHello recorded (%d bytes)", len(rc.buf))
	}
	return bytes.Clone(rc.buf)
}

var errReadRefused = errors.New("testnet: recording conn refuses reads")

// recordingConn accepts every write and fails the first read, which ends
// a client's handshake right after its ClientHello has been flushed. Any
// other call reaches the nil net.Conn and panics: the handshake must not
// need it.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *recordingConn) Read([]byte) (int, error) { return 0, errReadRefused }
func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// Hammer runs f on n goroutines, again and again, until the returned stop
// is called, which waits for them; a goroutine stops early when f returns
// false. Races between clients are tested by hammering one side while the
// test measures the other.
func Hammer(n int, f func() bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if !f() {
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// DeadAddr is an address that refuses connections: 127.0.0.1 port 1,
// checked. Not the port of a listener just closed: the kernel may hand
// that port to the next listener the test opens, nexmux's own included,
// and a "dead" backend would then be nexmux itself, a loop of
// connections.
func DeadAddr(t testing.TB) string {
	t.Helper()
	const addr = "127.0.0.1:1"
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("something listens on %s: no address to stand for a dead backend", addr)
	}
	return addr
}

var (
	portMu   sync.Mutex
	portNext int
)

// FreePort returns a loopback TCP port free now, for a test that must name
// its port before the code under test binds it (port routes). It is taken
// below the kernel's ephemeral range, which every ":0" listener and every
// outgoing connection draw from, so nothing but another FreePort can take
// it in between; those hand out ports in turn from a random start, and a
// port stays claimed against other test processes until t ends.
func FreePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	first := max(low-12000, 1024)
	portMu.Lock()
	defer portMu.Unlock()
	if portNext == 0 {
		portNext = first + rand.IntN(low-first)
	}
	for i := range low - first {
		p := first + (portNext-first+i)%(low-first)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		if !claim(t, p) {
			continue
		}
		portNext = p + 1
		return p
	}
	t.Fatalf("testnet: no free port in %d-%d", first, low-1)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				return n
			}
		}
	}
	return 32768 // Linux's default; macOS starts at 49152
}

// RefusalBurst drives a burst of refusals and checks their log lines:
// refuse is called for 20 names within one second, 5 in the next, and one
// more ("last."+domain) a second later. Once logs holds that last name, at
// most lograte.RefusalLines lines a second match line, and those lines
// plus the unlogged=N they carry account for all 26 refusals (a burst
// straddling a second may carry its count on any later line).
func RefusalBurst(t testing.TB, refuse func(name string), logs func() string, line, domain string) {
	t.Helper()
	nextSecond := func() {
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	}
	// A burst may span more than its second on a loaded machine: each
	// second it touched allows lograte.RefusalLines lines.
	seconds := 0
	burst := func(n int, prefix string) {
		nextSecond()
		first := time.Now().Unix()
		for i := range n {
			refuse(fmt.Sprintf("%s%d.%s", prefix, i, domain))
		}
		seconds += int(time.Now().Unix()-first) + 1
	}
	burst(20, "n")
	burst(5, "m")
	time.Sleep(1100 * time.Millisecond)
	refuse("last." + domain)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs(), "last."+domain); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the last refusal was never logged:\n%s", logs())
		}
	}
	text := logs()
	lines := regexp.MustCompile(`(?m)^.*`+line+`.*$`).FindAllString(text, -1)
	if max := seconds*lograte.RefusalLines + 1; len(lines) > max { // the bursts' seconds, then the last
		t.Fatalf("%d lines for 26 refusals, 25 of them in bursts within %d second(s), want at most %d", len(lines), seconds, max)
	}
	unlogged := 0
	for _, l := range lines {
		if m := regexp.MustCompile(`unlogged=(\d+)`).FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			unlogged += n
		}
	}
	if len(lines)+unlogged != 26 {
		t.Fatalf("%d lines and %d said unlogged, want the 26 refusals accounted for:\n%s", len(lines), unlogged, text)
	}
}

// ResetReachesOther resets resetter (an abortive close: SetLinger(0)) and
// fails t unless other, a TCP connection on the far side of a relay, reads
// a reset too rather than a clean end; name says which side other is.
func ResetReachesOther(t testing.TB, resetter, other net.Conn, name string) {
	t.Helper()
	_ = resetter.(*net.TCPConn).SetLinger(0)
	resetter.Close()
	b, err := io.ReadAll(other)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s read %d more bytes, then %v; want a reset (ECONNRESET), as the other side sent", name, len(b), err)
	}
}

// RequireNetns skips the test where it cannot create network namespaces
// and iptables rules (not root, or one of ip, iptables-restore,
// ip6tables-restore and tools missing), or fails it where
// NEXMUX_REQUIRE_NETNS is set (CI): there a missing tool must not pass
// quietly.
func RequireNetns(t testing.TB, tools ...string) {
	t.Helper()
	skip := func(msg string) {
		t.Helper()
		if os.Getenv("NEXMUX_REQUIRE_NETNS") != "" {
			t.Fatalf("NEXMUX_REQUIRE_NETNS is set but %s", msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		skip("needs root: creates network namespaces and iptables rules")
	}
	for _, tool := range append([]string{"ip", "iptables-restore", "ip6tables-restore"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			skip(fmt.Sprintf("needs %s (iproute2, iptables): %v", tool, err))
		}
	}
}

// TrickleBytes writes a byte to c every 100 ms until a write fails or
// stop is closed (nil: never), and sends that error (nil once stopped): a
// peer that never reads but keeps its stream from going idle.
func TrickleBytes(c net.Conn, stop <-chan struct{}) <-chan error {
	failed := make(chan error, 1)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				failed <- nil
				return
			case <-t.C:
			}
			if _, err := c.Write([]byte{'.'}); err != nil {
				failed <- err
				return
			}
		}
	}()
	return failed
}

// FloodEnd is how a Flood ended: how long after its last write that went
// through (about when the stream stalled: the buffers on the way were
// full) a write failed, and the error.
type FloodEnd struct {
	AfterStall time.Duration
	Err        error
}

// Flood writes to c without end until a write fails, and sends how.
func Flood(c net.Conn) <-chan FloodEnd {
	failed := make(chan FloodEnd, 1)
	go func() {
		chunk := bytes.Repeat([]byte("f"), 16<<10)
		last := time.Now()
		for {
			if _, err := c.Write(chunk); err != nil {
				failed <- FloodEnd{time.Since(last), err}
				return
			}
			last = time.Now()
		}
	}()
	return failed
}
