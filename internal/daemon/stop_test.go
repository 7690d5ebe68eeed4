package daemon_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// readyz returns /readyz's status and body.
func readyz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// uploadStreaming reports whether team-a-push has an upload in flight.
func uploadStreaming(t *testing.T, maddr string) bool {
	return metric(metricsText(t, maddr), "nexmux_uploads_in_flight", map[string]string{"route": "team-a-push.nexmux.test"}) == 1
}

// newConnStatus asks GET /v2/ on a connection of its own, so that it tests
// whether the listener still accepts.
func newConnStatus(st *stack.Stack, name string) int {
	tr := st.Transport()
	defer tr.CloseIdleConnections()
	tr.TLSClientConfig = &tls.Config{RootCAs: st.CA.Pool()}
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := cl.Get("https://" + st.Host(name) + "/v2/")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// On SIGTERM /readyz fails at once, while the listener keeps serving new
// connections for --shutdown-delay; only then does the drain close it. A
// balancer or Kubernetes endpoint that still sends here in that window is
// served, not refused.
func TestShutdownDelayKeepsServingWithReadinessOff(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0"   // the daemon binds it: no port another process can take first
	cfg.ShutdownDelay = 5 * time.Second // room for the checks below on a loaded machine
	st := stack.Start(t, stack.Options{Config: cfg})
	maddr := st.Daemon.Addr("metrics").String()

	if code, body := readyz(maddr); code != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM: %d %q", code, body)
	}
	// An HTTP/1.1 keep-alive connection opened before the signal.
	one := h1(st)
	defer one.CloseIdleConnections()
	kept := &http.Client{Transport: one, Timeout: 5 * time.Second}
	get := func() *http.Response {
		resp, err := kept.Get("https://" + st.Host("team-a") + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.Close {
		t.Fatal("a keep-alive response closed its connection before SIGTERM")
	}
	start := time.Now()
	stopped := make(chan struct{})
	go func() { defer close(stopped); st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal)) }()

	waitFor(t, "/readyz to fail after SIGTERM", func() bool {
		code, body := readyz(maddr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	})
	if code := newConnStatus(st, "team-a"); code != http.StatusUnauthorized && time.Since(start) < cfg.ShutdownDelay {
		t.Fatalf("a new connection within the shutdown delay got %d, want 401 from Nexus", code)
	}
	// Keep-alive clients are told to move on, and still served.
	if resp := get(); time.Since(start) < cfg.ShutdownDelay && (resp.StatusCode != http.StatusUnauthorized || !resp.Close) {
		t.Fatalf("a request on a kept connection during the delay: %d, closes %v; want 401 with Connection: close", resp.StatusCode, resp.Close)
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after the shutdown delay")
	}
	if took := time.Since(start); took < cfg.ShutdownDelay {
		t.Errorf("stopped after %v, before the %v shutdown delay", took, cfg.ShutdownDelay)
	}
	if c, err := net.DialTimeout("tcp", st.Addr, time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts after the drain")
	}
}

// Without --shutdown-delay the listener closes at once, and /readyz fails
// during the drain too.
func TestReadyzFailsDuringDrain(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	cfg.DrainTimeout = 20 * time.Second
	st := stack.Start(t, stack.Options{Config: cfg})
	maddr := st.Daemon.Addr("metrics").String()
	cl := &http.Client{Transport: st.Transport()}

	// An upload in flight keeps the drain going: its last chunk waits
	// until /readyz was asked, however slow the machine. The drain lets
	// it finish: Nexus takes the blob (201).
	asked := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(asked) })
	t.Cleanup(letGo)
	done := make(chan error, 1)
	go func() {
		code, err := slowPushGated(cl, "https://"+st.Host("team-a-push"), "drain/app", 6<<20, 50*time.Millisecond, asked)
		if err == nil && code != http.StatusCreated {
			err = fmt.Errorf("status %d, want 201", code)
		}
		done <- err
	}()
	waitFor(t, "the upload to start", func() bool { return uploadStreaming(t, maddr) })
	stopped := make(chan struct{})
	go func() { defer close(stopped); st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal)) }()
	waitListenerClosed(t, "the listener to close", st.Addr)
	// Asked while the drain still waits for the held upload.
	code, body := readyz(maddr)
	select {
	case <-stopped:
		t.Error("the drain ended while an upload was in flight")
	default:
		if !uploadStreaming(t, maddr) {
			t.Error("the upload was no longer in flight when /readyz was asked during the drain")
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz during the drain: %d %q, want 503 draining", code, body)
	}
	letGo()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit once the upload in flight could finish")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("upload in flight during the drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the upload in flight during the drain had no answer after the drain")
	}
}

// A second SIGTERM or SIGINT cuts the shutdown delay short, and a further
// one the drain: an operator's second Ctrl-C, or a supervisor that
// escalates, is not made to wait for --drain-timeout.
func TestSecondSignalCutsDelayAndDrain(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0" // the daemon binds it: no port another process can take first
	cfg.ShutdownDelay = time.Minute
	cfg.DrainTimeout = time.Minute
	st := stack.Start(t, stack.Options{Config: cfg})
	maddr := st.Daemon.Addr("metrics").String()
	cl := &http.Client{Transport: st.Transport()}

	// About 12 s of upload, its last chunk held until the drain was cut
	// (or the test ends): only a cut drain ends it, however slow the
	// machine. Held past the cut, a client whose connection was cut while
	// its last chunk waited would wait with it (the transport waits for
	// its body's writer), and look like an upload never cut.
	held := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(held) })
	t.Cleanup(letGo)
	done := make(chan error, 1)
	go func() {
		code, err := slowPushGated(cl, "https://"+st.Host("team-a-push"), "cut/app", 8<<20, 100*time.Millisecond, held)
		if err == nil && code != http.StatusCreated {
			err = fmt.Errorf("upload: status %d", code)
		}
		done <- err
	}()
	waitFor(t, "the upload to start", func() bool { return uploadStreaming(t, maddr) })

	sig := make(chan os.Signal, 1)
	stopped := make(chan struct{})
	go func() { defer close(stopped); st.Daemon.Stop(syscall.SIGTERM, sig) }()
	time.Sleep(200 * time.Millisecond)
	if code := newConnStatus(st, "team-a"); code != http.StatusUnauthorized {
		t.Fatalf("a new connection within the shutdown delay got %d, want 401", code)
	}
	sig <- syscall.SIGHUP // ignored while stopping
	sig <- syscall.SIGINT
	waitListenerClosed(t, "the listener to close after the second signal", st.Addr)
	select {
	case <-stopped:
		t.Fatal("the drain ended with an upload in flight and no further signal")
	case <-time.After(500 * time.Millisecond):
	}
	sig <- syscall.SIGTERM
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("a third signal did not cut the drain")
	}
	letGo()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the upload finished although the drain was cut")
		}
	case <-time.After(10 * time.Second):
		t.Error("the upload's connection was not closed when the drain was cut")
	}
}

// A listener that fails during --shutdown-delay ends the delay (the
// process no longer serves everything it claims), and stop returns its
// error, so the exit status says so.
func TestListenerFailureEndsShutdownDelay(t *testing.T) {
	cfg := teamRoutes()
	cfg.ShutdownDelay = time.Minute
	st := stack.Start(t, stack.Options{Config: cfg})
	failed := errors.New("accept: too many open files")
	stopped := make(chan error, 1)
	go func() { stopped <- st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal)) }()
	time.Sleep(100 * time.Millisecond)
	st.Daemon.FailListener(failed)
	select {
	case err := <-stopped:
		if !errors.Is(err, failed) {
			t.Fatalf("stop returned %v, want the listener's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a failed listener did not end the shutdown delay")
	}
}

// An upload still in flight when --drain-timeout ends is cut by nexmux, not
// by its client: the access line must not blame the client ("client error:
// ... client disconnected"), which sends whoever reads it after a rollout
// looking at the client for a push the drain ended.
func TestUploadCutByDrainEndNotBlamedOnClient(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.DrainTimeout = time.Second
	st, logs := logStack(t, cfg)
	maddr := st.Daemon.Addr("metrics").String()
	one := h1(st)
	held := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(held) })
	t.Cleanup(letGo)
	done := make(chan error, 2)
	for _, tr := range []*http.Transport{st.Transport(), one} {
		cl := &http.Client{Transport: tr}
		go func() {
			// About 12 s of upload, its last chunk held until the drain
			// has ended: only the drain's end stops it, however slow the
			// machine.
			_, err := slowPushGated(cl, "https://"+st.Host("team-a-push"), "cut/app", 8<<20, 100*time.Millisecond, held)
			done <- err
		}()
	}
	waitFor(t, "both uploads to start", func() bool {
		return metric(metricsText(t, maddr), "nexmux_uploads_in_flight", map[string]string{"route": "team-a-push.nexmux.test"}) == 2
	})
	st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal, 1))
	// Cut now: a client whose last chunk still waited would wait with it
	// (the transport waits for its body's writer).
	letGo()
	for range 2 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("an upload's connection was not closed at the drain's end")
		}
	}
	waitFor(t, "both uploads' access lines", func() bool { return len(logLines(logs, "msg=request", "method=PUT")) == 2 })
	for _, line := range logLines(logs, "msg=request", "method=PUT") {
		if strings.Contains(line, "client error") || !strings.Contains(line, "drain") {
			t.Errorf("upload cut by the drain's end logged as: %s", line)
		}
	}
	// Nor does the line about the body blame the client.
	if lines := logLines(logs, "client request body failed; answered 400"); len(lines) > 0 {
		t.Errorf("the drain's end logged as a client's failed body: %s", lines[0])
	}
}
