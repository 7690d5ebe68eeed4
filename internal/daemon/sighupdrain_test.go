//go:build unix

package daemon_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
	"github.com/nexmux/nexmux/internal/testnet"
)

// A SIGHUP after SIGTERM is never lost without a word: during
// --shutdown-delay, while nexmux still accepts, it reloads (as the file
// watcher does then) and readiness stays off; during the drain it is
// ignored, and the log says so.
func TestSIGHUPDuringShutdownDelayAndDrain(t *testing.T) {
	guardSignals(t)

	nx, err := fixtures.New(fixtures.Config{Repos: stack.TeamRepos("team-a", "team-b"), Users: map[string]string{stack.User: stack.Password}, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(nx)
	defer func() { hs.Close(); nx.Close() }()

	c := config.Defaults()
	c.Upstream = []string{hs.URL}
	c.Listen = "127.0.0.1:0"
	maddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	c.MetricsListen = maddr
	c.Port = []string{"18082=team-a"}
	// Long enough never to end by themselves: a signal cuts the delay
	// short, the test ends the drain.
	c.ShutdownDelay = time.Minute
	c.DrainTimeout = time.Minute
	b, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	next := c
	next.Port = []string{"18082=team-a", "18083=team-b"}
	var reloads atomic.Int32
	logs := &testnet.Buffer{}
	// The drain lasts until the test lets the listener's Accept return
	// its error: the daemon's Shutdown waits for its Serve.
	release := make(chan struct{})
	var releaseOnce sync.Once
	drainEnds := func() { releaseOnce.Do(func() { close(release) }) }
	listen := func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		return &heldListener{Listener: ln, release: release}, nil
	}
	d, err := daemon.New(b, daemon.Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), WatchInterval: time.Hour, Listen: listen,
		Reload: func() (*config.Runtime, error) {
			reloads.Add(1)
			return next.Build()
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	defer func() {
		drainEnds()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
		// A test that failed half way stops the daemon: SIGTERMs cut the
		// delay and the drain.
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
				_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
			}
		}
	}()
	kill := func(s syscall.Signal) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), s); err != nil {
			t.Fatal(err)
		}
	}
	logged := func(what string) func() bool {
		return func() bool { return strings.Contains(logs.String(), what) }
	}
	waitFor(t, "/readyz to pass", func() bool { code, _ := readyz(maddr); return code == http.StatusOK })

	kill(syscall.SIGTERM)
	waitFor(t, "the shutdown delay", logged("stopping: readiness off"))
	kill(syscall.SIGHUP)
	waitFor(t, "the reload during the shutdown delay", logged("msg=reloaded routes=2"))
	if code, body := readyz(maddr); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("/readyz after a reload during the shutdown delay: %d %q", code, body)
	}

	kill(syscall.SIGTERM) // cuts the delay short
	waitFor(t, "the drain", logged("msg=draining"))
	kill(syscall.SIGHUP)
	waitFor(t, "the SIGHUP during the drain to be logged", logged("reload ignored"))
	drainEnds()
	select {
	case err := <-done:
		done <- err // for the deferred stop
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15 s after the drain")
	}
	if n := reloads.Load(); n != 1 {
		t.Errorf("%d reloads; want 1, the one during the shutdown delay", n)
	}
}

// heldListener's Accept, once the listener is closed, returns only when
// release is closed.
type heldListener struct {
	net.Listener
	release <-chan struct{}
}

func (l *heldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.release
	}
	return c, err
}
