package daemon_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// slowReader hands out n pseudo-random bytes in small pieces with pauses,
// so a transfer is still running while the test reloads or stops nexmux.
type slowReader struct {
	r     io.Reader
	pause time.Duration
	chunk int
	// gate, when set, holds back the last chunk (left counts what is
	// left) until it is closed: the transfer is surely still running
	// when the test acts on it.
	gate <-chan struct{}
	left int64
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	if len(p) > s.chunk {
		p = p[:s.chunk]
	}
	if s.gate != nil && s.left <= int64(len(p)) {
		<-s.gate
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	return n, err
}

func digestOf(n int64) string {
	h := sha256.New()
	io.Copy(h, newPRNG(n))
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// slowPush uploads n bytes to base (https://host:port) in about
// n/chunk*pause, and returns the final status.
func slowPush(cl *http.Client, base, repoPath string, n int64, pause time.Duration) (int, error) {
	return slowPushGated(cl, base, repoPath, n, pause, nil)
}

// slowPushGated is slowPush whose last chunk waits for gate to close (nil:
// no wait).
func slowPushGated(cl *http.Client, base, repoPath string, n int64, pause time.Duration, gate <-chan struct{}) (int, error) {
	digest := digestOf(n)
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/"+repoPath+"/blobs/uploads/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, fmt.Errorf("start upload: %s", resp.Status)
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, _ = http.NewRequest(http.MethodPut, loc+sep+"digest="+digest, &slowReader{r: newPRNG(n), pause: pause, chunk: 64 << 10, gate: gate, left: n})
	req.ContentLength = n
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err = cl.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write-and-rename, like config management tools and Kubernetes do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func metricsText(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// sample returns the sample of name whose labels include these, or nil.
func sample(mf map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := mf[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		for _, lp := range m.Label {
			if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
				continue next
			}
		}
		return m
	}
	return nil
}

// present tells an expected 0 from a missing series.
func present(mf map[string]*dto.MetricFamily, name string, labels map[string]string) bool {
	return sample(mf, name, labels) != nil
}

// metric returns a counter's or gauge's value, or a histogram's sample
// count (0 when absent).
func metric(mf map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	m := sample(mf, name, labels)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestReloadSwapsRoutesAndKeepsTransfers(t *testing.T) {

	dir := t.TempDir()
	file := filepath.Join(dir, "nexmux.yaml")
	writeFile(t, file, `route:
  - "team-a.nexmux.test=team-a"
  - "team-a-push.nexmux.test=team-a-hosted"
`)
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: fastWatch}, ConfigFile: file, Config: config.Config{MetricsListen: "127.0.0.1:0"}})
	cl := &http.Client{Transport: st.Transport()}
	base := "https://" + st.Host("team-a-push")

	// A push that takes ~1.5 s runs across two reloads: one that removes
	// another route and adds one, and one that is invalid. (Removing its
	// own route would end it: TestReloadRevokesLiveConnections.)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := slowPush(cl, base, "reload/app", 3<<20, 30*time.Millisecond)
		done <- result{code, err}
	}()
	// While the upload streams, the gauge shows it.
	inFlight := map[string]string{"route": "team-a-push.nexmux.test"}
	waitFor(t, "the upload to show as in flight", func() bool {
		return metric(metricsText(t, st.Daemon.Addr("metrics").String()), "nexmux_uploads_in_flight", inFlight) == 1
	})

	writeFile(t, file, `route:
  - "team-a-push.nexmux.test=team-a-hosted"
  - "team-c.nexmux.test=team-b"
`)
	waitFor(t, "the new route to serve", func() bool {
		return get(st, "team-c", "/v2/") == http.StatusUnauthorized
	})
	// New connections to the removed name are refused at the handshake.
	if _, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool()}); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("removed route still accepted new connections: %v", err)
	}

	// An invalid configuration is refused whole; the old table serves on.
	writeFile(t, file, `route:
  - "team-a-push.nexmux.test=team-a-hosted"
  - "team-d.nexmux.test=../escape"
bogus-key: 1
`)
	waitFor(t, "the failed reload to be counted", func() bool {
		return metric(metricsText(t, st.Daemon.Addr("metrics").String()), "nexmux_reloads_total", map[string]string{"result": "error"}) >= 1
	})
	if got := get(st, "team-c", "/v2/"); got != http.StatusUnauthorized {
		t.Errorf("after a bad reload the previous table should serve: team-c got %d", got)
	}

	r := <-done
	if r.err != nil || r.code != http.StatusCreated {
		t.Fatalf("push across reloads: %d %v (want 201, digest verified by Nexus)", r.code, r.err)
	}
	mf := metricsText(t, st.Daemon.Addr("metrics").String())
	if !present(mf, "nexmux_uploads_in_flight", inFlight) || metric(mf, "nexmux_uploads_in_flight", inFlight) != 0 {
		t.Fatal("the in-flight gauge did not return to 0 after the upload")
	}
}

func get(st *stack.Stack, host, path string) int {
	tr := st.Transport()
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + st.Host(host) + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMetricsAfterKnownTraffic(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0"
	st := stack.Start(t, stack.Options{Config: cfg})
	maddr := st.Daemon.Addr("metrics").String()

	cl := &http.Client{Transport: st.Transport()}
	for i := 0; i < 5; i++ {
		resp, err := cl.Get("https://" + st.Host("team-a") + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for i := 0; i < 2; i++ {
		c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "unknown.nexmux.test", RootCAs: st.Pool()})
		if err == nil {
			c.Close()
		}
	}
	img := pushImage(t, st, st.Host("team-a-push")+"/metrics/app:1")
	pullVerify(t, st, st.Host("team-a")+"/metrics/app:1", img)
	layers, _ := img.Layers()
	var layerBytes int64
	for _, l := range layers {
		n, _ := l.Size()
		layerBytes += n
	}

	mf := metricsText(t, maddr)
	a := map[string]string{"route": "team-a.nexmux.test"}
	if got := metric(mf, "nexmux_requests_total", map[string]string{"route": "team-a.nexmux.test", "method": "GET", "class": "4xx"}); got < 5 {
		t.Errorf("GET 4xx on team-a: %v, want >= 5", got)
	}
	if got := metric(mf, "nexmux_handshake_failures_total", map[string]string{"reason": "unknown_sni"}); got != 2 {
		t.Errorf("unknown_sni failures: %v, want 2", got)
	}
	if got := metric(mf, "nexmux_request_bytes_total", map[string]string{"route": "team-a-push.nexmux.test"}); got < float64(layerBytes) {
		t.Errorf("bytes received on the push route: %v, want >= %d (the layers)", got, layerBytes)
	}
	if got := metric(mf, "nexmux_response_bytes_total", a); got < float64(layerBytes) {
		t.Errorf("bytes sent on the pull route: %v, want >= %d", got, layerBytes)
	}
	if got := metric(mf, "nexmux_upstream_latency_seconds", a); got < 5 {
		t.Errorf("upstream latency samples on team-a: %v", got)
	}
	if got := metric(mf, "nexmux_connections_total", a); got < 1 {
		t.Errorf("connections on team-a: %v", got)
	}
	if push := map[string]string{"route": "team-a-push.nexmux.test"}; !present(mf, "nexmux_uploads_in_flight", push) {
		t.Errorf("no uploads_in_flight series for the push route")
	} else if got := metric(mf, "nexmux_uploads_in_flight", push); got != 0 {
		t.Errorf("uploads in flight after the push: %v", got)
	}

	status := func(path string) int {
		resp, err := http.Get("http://" + maddr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status("/healthz") != 200 || status("/readyz") != 200 {
		t.Fatalf("healthz %d readyz %d", status("/healthz"), status("/readyz"))
	}
	st.Nexus.SetDown(true)
	waitFor(t, "/readyz to report Nexus down", func() bool { return status("/readyz") == http.StatusServiceUnavailable })
	if status("/healthz") != 200 {
		t.Error("healthz must not depend on Nexus")
	}
	st.Nexus.SetDown(false)
	waitFor(t, "/readyz to recover", func() bool { return status("/readyz") == 200 })
}

func TestAccessLogHasNoSecrets(t *testing.T) {
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Config: teamRoutes(), Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	img := pushImage(t, st, st.Host("team-a-push")+"/logs/app:1")
	pullVerify(t, st, st.Host("team-a")+"/logs/app:1", img)

	var tokens []string
	for _, r := range st.Nexus.Requests() {
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			tokens = append(tokens, strings.TrimPrefix(a, "Bearer "))
		}
	}
	if len(tokens) == 0 {
		t.Fatal("no bearer token was used; the test would prove nothing")
	}
	out := logs.String()
	for _, secret := range append(tokens, stack.Password, "YWRtaW46YWRtaW4xMjM=" /* base64 admin:admin123 */) {
		if strings.Contains(out, secret) {
			t.Errorf("log contains a secret %q", secret)
		}
	}
	var lines int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("not a JSON log line: %s", sc.Text())
		}
		if rec["msg"] != "request" {
			continue
		}
		lines++
		for _, k := range []string{"route", "repo", "method", "path", "status", "bytes_in", "bytes_out", "duration", "client"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("access line without %q: %s", k, sc.Text())
			}
		}
	}
	if lines < 5 {
		t.Fatalf("%d access lines for a push and a pull", lines)
	}
}

// TestSignals runs the real binary: SIGHUP reloads, SIGTERM drains an
// upload in flight and exits 0.
func TestSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "nexmux")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/nexmux/nexmux/cmd/nexmux").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	nx, err := fixtures.New(fixtures.Config{Repos: stack.TeamRepos("team-a", "team-b"), Users: map[string]string{stack.User: stack.Password}, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// The upload drained below is at Nexus once its PUT is.
	var putAtNexus atomic.Bool
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/drain/app/") {
			putAtNexus.Store(true)
		}
		nx.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.Close(); nx.Close() })

	ca, _ := certs.NewCA("signals CA")
	pair, _ := ca.Issue("*." + stack.Domain)
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := pair.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	port := freePort(t) // below the ephemeral range: no ":0" listener takes it before nexmux does
	file := filepath.Join(dir, "nexmux.yaml")
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nupstream: [%q]\ncert: [%q]\nkey: [%q]\ndrain-timeout: 20s\nroute:\n  - team-a-push.nexmux.test=team-a-hosted\n", port, hs.URL, crt, key)
	writeFile(t, file, conf)

	stderr := &logBuffer{} // read while nexmux writes it
	cmd := exec.Command(bin, "serve", "--config", file)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		},
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
	}
	cl := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	code := func(host string) int {
		resp, err := cl.Get(fmt.Sprintf("https://%s.%s:%d/v2/", host, stack.Domain, port))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "nexmux to listen", func() bool { return code("team-a-push") == http.StatusUnauthorized })
	if code("team-b") != 0 {
		t.Fatal("team-b answered before it was configured")
	}

	writeFile(t, file, conf+"  - team-b.nexmux.test=team-b\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP to add team-b", func() bool { tr.CloseIdleConnections(); return code("team-b") == http.StatusUnauthorized })

	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	// The upload's last chunk waits for the drain to have started, however
	// slow the machine: it is surely in flight when SIGTERM comes.
	drainSeen := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(drainSeen) }) })
	go func() {
		c, err := slowPushGated(cl, fmt.Sprintf("https://team-a-push.%s:%d", stack.Domain, port), "drain/app", 2<<20, 30*time.Millisecond, drainSeen)
		done <- result{c, err}
	}()
	waitFor(t, "the upload at Nexus", putAtNexus.Load)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nexmux to drain", func() bool { return strings.Contains(stderr.String(), "msg=draining") })
	once.Do(func() { close(drainSeen) })
	r := <-done
	if r.err != nil || r.code != http.StatusCreated {
		t.Fatalf("upload in flight during SIGTERM: %d %v\n%s", r.code, r.err, stderr.String())
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after drain: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nexmux did not exit after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "draining") {
		t.Errorf("no drain log line:\n%s", stderr.String())
	}
	// The upload drained at exit has its access line (access lines are
	// batched; LogWriter's own tests cover the write at Close).
	if !regexp.MustCompile(`msg=request .*method=PUT .*status=201`).MatchString(stderr.String()) {
		t.Errorf("no access line for the upload drained at exit:\n%s", stderr.String())
	}
}

// Kubernetes mounts a ConfigMap as <dir>/config.yaml -> ..data/config.yaml
// and updates it by pointing the ..data symlink at a new directory: the
// file itself is never written. The reload must still see the change.
func TestReloadOnKubernetesSymlinkSwap(t *testing.T) {

	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		// Atomic swap of ..data, as the kubelet does.
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", "route: [\"team-a.nexmux.test=team-a\"]\n")
	file := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), file); err != nil {
		t.Fatal(err)
	}
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: fastWatch}, ConfigFile: file})
	if got := get(st, "team-a", "/v2/"); got != http.StatusUnauthorized {
		t.Fatalf("team-a before the swap: %d", got)
	}
	version("..v2", "route: [\"team-a.nexmux.test=team-a\", \"team-b.nexmux.test=team-b\"]\n")
	waitFor(t, "the symlink swap to be reloaded", func() bool { return get(st, "team-b", "/v2/") == http.StatusUnauthorized })
}

// Settings baked into running servers cannot change on reload: such a
// reload is refused whole, saying which setting needs a restart. SOCKS5
// users are per-connection state: revoking one takes effect on reload.
func TestReloadRefusesRestartOnlySettingsAndRevokesSOCKSUsers(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "socks.auth")
	writeFile(t, auth, "alice:one\nbob:two\n")
	file := filepath.Join(dir, "nexmux.yaml")
	base := "route: [\"team-a.nexmux.test=team-a\"]\nsocks5-listen: 127.0.0.1:0\nsocks5-auth-file: " + auth + "\n"
	writeFile(t, file, base)
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: fastWatch}, ConfigFile: file, Config: config.Config{MetricsListen: "127.0.0.1:0"},
		Logger: slog.New(slog.NewTextHandler(logs, nil))})

	socksGet := func(user, pass string) error {
		tr := socksTransport(st, url.UserPassword(user, pass))
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://team-a.nexmux.test/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := socksGet("bob", "two"); err != nil {
		t.Fatalf("bob before revocation: %v", err)
	}
	writeFile(t, auth, "alice:one\n")
	waitFor(t, "bob's revocation", func() bool { return socksGet("bob", "two") != nil })
	if err := socksGet("alice", "one"); err != nil {
		t.Fatalf("alice after bob's revocation: %v", err)
	}

	// (The upstream node list itself reloads: see the HA tests.)
	writeFile(t, file, base+"upstream-max-conns: 5\n")
	waitFor(t, "the refused reload", func() bool {
		return strings.Contains(logs.String(), "need a restart: upstream-max-conns")
	})
	if got := get(st, "team-a", "/v2/"); got != http.StatusUnauthorized {
		t.Fatalf("after a refused reload the old upstream must serve: %d", got)
	}
}

// fastWatch checks watched files often, so reload tests wait little.
const fastWatch = 50 * time.Millisecond
