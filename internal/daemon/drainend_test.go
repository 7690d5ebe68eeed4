package daemon_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// A request still waiting for Nexus's response headers when
// --drain-timeout ends is accounted for before the drain returns (and the
// process exits): its access line says the drain cut it, and
// nexmux_requests_total counts it. Before, its handler sat in the round
// trip to Nexus (bounded by 300 s) and the process exited without either.
// Reads and uploads whose body went out already, over HTTP/1 and HTTP/2.
func TestRequestAwaitingNexusAtDrainEndIsAccounted(t *testing.T) {
	cfg := teamRoutes()
	cfg.DrainTimeout = time.Second
	st, logs := logStackWith(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]

	http1 := h1(st)
	h2 := st.Transport()
	clients := map[string]*http.Client{"HTTP/1.1": {Transport: http1}, "HTTP/2.0": {Transport: h2}}

	// Upload sessions, opened while Nexus still answers.
	sessions := map[string]string{}
	for proto, cl := range clients {
		req, _ := http.NewRequest(http.MethodPost, "https://"+st.Host("team-a-push")+"/v2/held/app/blobs/uploads/", nil)
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || resp.Proto != proto {
			t.Fatalf("start upload: %s over %s, want 202 over %s", resp.Status, resp.Proto, proto)
		}
		sessions[proto] = resp.Header.Get("Location")
	}
	before := map[string]float64{}
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		before[m] = counterValue(t, st.Daemon, "nexmux_requests_total", map[string]string{"method": m})
	}

	node.SetBlackhole(true)
	held := len(node.Requests())
	done := make(chan string, 4)
	for proto, cl := range clients {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/app/manifests/1", nil)
			req.SetBasicAuth(stack.User, stack.Password)
			if resp, err := cl.Do(req); err == nil {
				resp.Body.Close()
			}
			done <- proto + " GET"
		}()
		go func() {
			loc := sessions[proto]
			sep := "?"
			if strings.Contains(loc, "?") {
				sep = "&"
			}
			// A body small enough to be in Nexus's socket buffer whole.
			body := strings.Repeat("x", 4<<10)
			req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(body))), strings.NewReader(body))
			req.SetBasicAuth(stack.User, stack.Password)
			if resp, err := cl.Do(req); err == nil {
				resp.Body.Close()
			}
			done <- proto + " PUT"
		}()
	}
	waitFor(t, "four requests held at Nexus", func() bool { return len(node.Requests()) >= held+4 })

	st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal, 1))
	// What follows is what the process has logged and counted when it
	// exits: the checks run before anything else can happen.
	lines := logLines(logs, "msg=request", "drain")
	after := map[string]float64{}
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		after[m] = counterValue(t, st.Daemon, "nexmux_requests_total", map[string]string{"method": m})
	}
	if len(lines) != 4 {
		t.Errorf("%d access lines saying the drain cut the request, want 4 (2 GET, 2 PUT): %q\nall:\n%s",
			len(lines), lines, strings.Join(logLines(logs, "msg=request"), "\n"))
	}
	for _, line := range lines {
		if !strings.Contains(line, "cut by nexmux at the drain's end") {
			t.Errorf("access line: %s", line)
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		if got := after[m] - before[m]; got != 2 {
			t.Errorf("nexmux_requests_total{method=%s} grew by %v during the drain, want 2", m, got)
		}
	}
	for range 4 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a client's request was still open after the drain")
		}
	}
}

// A download whose Nexus stalls mid-body when --drain-timeout ends is cut
// at Nexus too: its handler, which waits on Nexus's next bytes and has not
// written to the closed client connection since, logs and counts it
// before the drain returns, saying the drain cut it.
func TestDownloadStalledAtNexusAtDrainEndIsAccounted(t *testing.T) {
	cfg := teamRoutes()
	cfg.DrainTimeout = time.Second
	st, logs := logStackWith(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]
	digest := seedLayer(t, st, "team-b-hosted", "trickle", 256<<10)
	// 100 bytes a second: net/http's 4 KiB write buffer towards the
	// client takes 40 s to fill, so nothing reaches the client's closed
	// connection in the test's time.
	node.SetSlow(0, 100)

	http1 := h1(st)
	before := counterValue(t, st.Daemon, "nexmux_requests_total", map[string]string{"method": http.MethodGet})
	done := make(chan struct{}, 2)
	for _, tr := range []*http.Transport{http1, st.Transport()} {
		cl := &http.Client{Transport: tr}
		go func() {
			defer func() { done <- struct{}{} }()
			req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-b")+"/v2/trickle/blobs/"+digest, nil)
			req.SetBasicAuth(stack.User, stack.Password)
			if resp, err := cl.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, "two downloads at Nexus", func() bool {
		n := 0
		for _, r := range node.Requests() {
			if strings.Contains(r.Path, "/blobs/") {
				n++
			}
		}
		return n == 2
	})
	time.Sleep(200 * time.Millisecond) // the first bytes on their way

	st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal, 1))
	lines := logLines(logs, "msg=request", "method=GET", "/blobs/")
	got := counterValue(t, st.Daemon, "nexmux_requests_total", map[string]string{"method": http.MethodGet}) - before
	if len(lines) != 2 {
		t.Errorf("%d access lines for the downloads when the drain returned, want 2: %q", len(lines), lines)
	}
	for _, line := range lines {
		if !strings.Contains(line, "cut by nexmux at the drain's end") {
			t.Errorf("download cut by the drain's end logged as: %s", line)
		}
	}
	if got != 2 {
		t.Errorf("nexmux_requests_total{method=GET} grew by %v during the drain, want 2", got)
	}
	for range 2 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a download was still open after the drain")
		}
	}
}

// A request still queued for a place on a busy node (--upstream-max-conns)
// when --drain-timeout ends is ended then too, and says the drain ended it:
// before, it waited out its 2 s queue time and was logged as Nexus being
// busy.
func TestRequestQueuedForNexusAtDrainEndIsCutByTheDrain(t *testing.T) {
	cfg := teamRoutes()
	// Short: the queued request must still be waiting for its place (2 s
	// at most) when the drain ends.
	cfg.DrainTimeout = 300 * time.Millisecond
	cfg.UpstreamMaxConns = 1
	st, logs := logStackWith(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]
	http1 := h1(st)
	cl := &http.Client{Transport: http1}
	send := func(method, host, path string, body io.Reader, done chan<- struct{}) {
		req, _ := http.NewRequest(method, "https://"+st.Host(host)+path, body)
		req.SetBasicAuth(stack.User, stack.Password)
		if resp, err := cl.Do(req); err == nil {
			resp.Body.Close()
		}
		close(done)
	}
	node.SetBlackhole(true)
	held := len(node.Requests())
	first, queued := make(chan struct{}), make(chan struct{})
	go send(http.MethodGet, "team-a", "/v2/app/manifests/held", nil, first)
	waitFor(t, "the first request held at Nexus", func() bool { return len(node.Requests()) > held })
	// An upload with its body still unread: closing the client's connection
	// cancels no context under it (net/http reads the connection again
	// only once the body is read). A write, so nexmux_uploads_in_flight
	// says when it is in nexmux, queued.
	body := strings.Repeat("x", 4<<10)
	go send(http.MethodPost, "team-a-push", fmt.Sprintf("/v2/queued/blobs/uploads/?digest=sha256:%x", sha256.Sum256([]byte(body))), strings.NewReader(body), queued)
	waitFor(t, "the second request in nexmux", func() bool {
		return counterValue(t, st.Daemon, "nexmux_uploads_in_flight", nil) == 1
	})
	st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal, 1))
	lines := logLines(logs, "msg=request", "/v2/queued/")
	if len(lines) != 1 || !strings.Contains(lines[0], "cut by nexmux at the drain's end") {
		t.Errorf("the queued request's access line: %q, want one saying the drain's end cut it", lines)
	}
	for _, c := range []chan struct{}{first, queued} {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("a client's request was still open after the drain")
		}
	}
}

// HTTP/2 requests queued for a place on a busy node (--upstream-max-conns)
// when --drain-timeout ends are logged and counted before the drain
// returns. Their handlers hold no Nexus connection, and their HTTP/2
// connection leaves the server's count as soon as it closes, before they
// have run: the drain must wait for the handlers themselves, or the exit
// races their lines. Access lines slow to be taken (a busy log consumer)
// make the race one the exit always wins.
func TestHTTP2RequestsQueuedForNexusAtDrainEndAreAccounted(t *testing.T) {
	cfg := teamRoutes()
	// Short: the queued requests must still be waiting for their place
	// (2 s at most) when the drain ends.
	cfg.DrainTimeout = 300 * time.Millisecond
	// Each of their access lines takes 3/5 of CutGrace from the cut: past
	// the half after which the cut closes their connection whatever still
	// runs, so only the drain's wait for the handlers themselves sees them
	// through; well within the whole, which bounds that wait, so a slow
	// machine has 0.8 s to write them.
	q := startQueuedH2(t, cfg, 30, daemon.CutGrace*3/5)
	q.st.Daemon.Stop(syscall.SIGTERM, make(chan os.Signal, 1))
	q.checkAccounted(t)
}

// A second SIGTERM or SIGINT during the drain closes the connections at
// once, without the wait the drain's end gives its cut requests to answer:
// HTTP/2 requests then queued for a place on a busy node are still logged
// and counted before stop returns. Their HTTP/2 connection leaves the
// server's count as it closes and nothing of theirs is at Nexus, so only
// the wait for the handlers themselves stands between the exit and their
// lines, which a slow log consumer delays a little each.
func TestSecondSignalDuringDrainAccountsQueuedHTTP2Requests(t *testing.T) {
	cfg := teamRoutes()
	cfg.DrainTimeout = time.Minute // only the second signal ends it
	q := startQueuedH2(t, cfg, 30, 30*time.Millisecond)
	sig := make(chan os.Signal, 1)
	stopped := make(chan struct{})
	go func() { defer close(stopped); q.st.Daemon.Stop(syscall.SIGTERM, sig) }()
	// The listener closes once the drain is under way, the queued requests
	// still waiting for their place (2 s at most): the signal cuts them.
	waitListenerClosed(t, "the listener to close at the drain's start", q.st.Addr)
	sig <- syscall.SIGINT
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not end the drain")
	}
	q.checkAccounted(t)
	if len(logLines(q.logs, "second signal: closing remaining connections now")) != 1 {
		t.Error("the daemon did not log the second signal: the drain ended otherwise")
	}
}

// queuedH2 is a stack whose one Nexus node takes one connection from
// nexmux, held by a request Nexus never answers, with n HTTP/2 requests
// queued behind it for that place.
type queuedH2 struct {
	st     *stack.Stack
	logs   *logBuffer
	n      int
	before float64       // nexmux_requests_total{method=GET} once all are in
	done   chan struct{} // a client's request ended
}

// startQueuedH2 starts a queuedH2 whose queued requests' access lines
// each take delay to be taken (slowAccess), and returns once every
// handler runs.
func startQueuedH2(t *testing.T, cfg config.Config, n int, delay time.Duration) *queuedH2 {
	t.Helper()
	cfg.UpstreamMaxConns = 1
	st, logs := hookedLogStack(t, stack.Options{Config: cfg, Nodes: 1}, slowAccess("/v2/queued/", delay))
	q := &queuedH2{st: st, logs: logs, n: n, done: make(chan struct{}, n+1)}
	node := st.NexusNodes[0]
	cl := &http.Client{Transport: st.Transport()}
	get := func(path string) {
		defer func() { q.done <- struct{}{} }()
		req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+path, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		if resp, err := cl.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	node.SetBlackhole(true)
	held := len(node.Requests())
	go get("/v2/app/manifests/held")
	waitFor(t, "the first request held at Nexus", func() bool { return len(node.Requests()) > held })
	for i := range n {
		go get("/v2/queued/manifests/" + strconv.Itoa(i))
	}
	// Queued for the one place, well within its 2 s queue time: nothing
	// of theirs reaches Nexus to wait for. Their handlers all run before
	// the drain starts, however slow the machine.
	waitFor(t, "the queued requests' handlers", func() bool { return st.Daemon.Handling() == n+1 })
	q.before = counterValue(t, st.Daemon, "nexmux_requests_total", map[string]string{"method": http.MethodGet})
	return q
}

// checkAccounted checks, once the drain has returned, that every request
// was logged and counted, the queued ones as cut by the drain's end, and
// that their clients were answered.
func (q *queuedH2) checkAccounted(t *testing.T) {
	t.Helper()
	// What the process has logged and counted when it exits: read first.
	running := q.st.Daemon.Handling()
	lines := logLines(q.logs, "msg=request", "/v2/queued/")
	counted := counterValue(t, q.st.Daemon, "nexmux_requests_total", map[string]string{"method": http.MethodGet}) - q.before
	if running != 0 {
		t.Errorf("%d request handlers still running when the drain returned", running)
	}
	if len(lines) != q.n {
		t.Errorf("%d access lines for the %d queued requests when the drain returned", len(lines), q.n)
	}
	if counted != float64(q.n+1) {
		t.Errorf("nexmux_requests_total{method=GET} grew by %v during the drain, want %d (the held request and the %d queued)", counted, q.n+1, q.n)
	}
	for _, line := range lines {
		if !strings.Contains(line, "cut by nexmux at the drain's end") {
			t.Errorf("queued request cut by the drain's end logged as: %s", line)
			break
		}
	}
	for range q.n + 1 {
		select {
		case <-q.done:
		case <-time.After(10 * time.Second):
			t.Fatal("a client's request was still open after the drain")
		}
	}
}

// slowAccess takes delay to let each access line of a request whose path
// holds part go on (a slow log consumer). It waits before the handler's
// lock, not in its writer: slog writes a line at a time, and a writer that
// slept would hold the daemon's own last line behind the access lines,
// which alone would keep the drain from returning before them.
func slowAccess(part string, delay time.Duration) func(slog.Record) {
	return func(r slog.Record) {
		if r.Message != "request" {
			return
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "path" && strings.Contains(a.Value.String(), part) {
				time.Sleep(delay)
				return false
			}
			return true
		})
	}
}
