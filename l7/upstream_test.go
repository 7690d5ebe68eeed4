package l7

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// haNode is a Nexus stand-in whose handler the test sets.
type haNode struct {
	addr string
	h    atomic.Pointer[http.HandlerFunc]
	hits atomic.Int64
}

func startNode(t *testing.T, h http.HandlerFunc) *haNode {
	t.Helper()
	n := &haNode{}
	n.h.Store(&h)
	ln := testnet.Listen(t)
	n.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") {
			n.hits.Add(1)
		}
		(*n.h.Load())(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return n
}

// haProxy serves a Proxy over loopback in front of nodes, with probes
// every 50ms.
func haProxy(t *testing.T, log io.Writer, maxConns int, nodes ...*haNode) (string, *Upstreams) {
	t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "http://"+n.addr)
	}
	return haProxyURLs(t, log, maxConns, "team-a", urls...)
}

// haProxyURLs serves a Proxy in front of the nodes at urls, mapping
// team-a.example.com onto repository repo.
func haProxyURLs(t *testing.T, log io.Writer, maxConns int, repo string, urls ...string) (string, *Upstreams) {
	t.Helper()
	return haProxyConfig(t, log, maxConns, repo, Config{}, urls...)
}

// haProxyConfig is haProxyURLs with more of the Proxy's Config (its
// upstreams and logger are set here, and its transport unless given).
func haProxyConfig(t *testing.T, log io.Writer, maxConns int, repo string, cfg Config, urls ...string) (string, *Upstreams) {
	t.Helper()
	return haProxyProbing(t, log, maxConns, repo, cfg, 50*time.Millisecond, urls...)
}

// haProxyProbing is haProxyConfig with probes every interval (the first
// round at once; Set.Update kicks another).
func haProxyProbing(t *testing.T, log io.Writer, maxConns int, repo string, cfg Config, interval time.Duration, urls ...string) (string, *Upstreams) {
	t.Helper()
	return haProxyWrapped(t, log, maxConns, repo, cfg, interval, nil, urls...)
}

// firstClientContext is a wrap for haProxyWrapped that hands over the
// first request's context, done once nexmux saw the client leave.
func firstClientContext() (<-chan context.Context, func(http.Handler) http.Handler) {
	ch := make(chan context.Context, 1)
	return ch, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case ch <- r.Context():
			default:
			}
			next.ServeHTTP(w, r)
		})
	}
}

// haProxyWrapped is haProxyProbing with the Proxy served through wrap
// (nil: as it is).
func haProxyWrapped(t *testing.T, log io.Writer, maxConns int, repo string, cfg Config, interval time.Duration, wrap func(http.Handler) http.Handler, urls ...string) (string, *Upstreams) {
	t.Helper()
	spec, err := upstream.ParseSpec(urls, nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(log, nil))
	up := NewUpstreams(spec, upstream.NewSet(spec, logger), UpstreamOptions{MaxConns: maxConns})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	up.Set().Start(ctx, interval)
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=" + repo}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Transport == nil {
		tr := NewTransport()
		t.Cleanup(tr.CloseIdleConnections)
		cfg.Transport = tr
	}
	cfg.Upstreams, cfg.Logger = up, logger
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = p
	if wrap != nil {
		h = wrap(p)
	}
	ln := testnet.Listen(t)
	srv := &http.Server{Handler: h, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		client, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		return NewContext(ctx, &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com", Client: client})
	}}
	// HTTP/2 with prior knowledge too, for the tests of HTTP/2 streams.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), up
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func send(t *testing.T, addr, method, path string, body io.Reader) (*http.Response, string) {
	t.Helper()
	return sendRequest(t, teamRequest(addr, method, path, body))
}

// teamRequest is a request to nexmux at addr for team-a's name.
func teamRequest(addr, method, path string, body io.Reader) *http.Request {
	req, _ := http.NewRequest(method, "http://"+addr+path, body)
	req.Host = "team-a.example.com"
	return req
}

// answer is what sendLater's request got: its response and body, or its
// error.
type answer struct {
	resp *http.Response
	body string
	err  error
}

// sendLater sends req on a connection of its own in the background; the
// channel gets its answer once the body is read.
func sendLater(req *http.Request) <-chan answer {
	got := make(chan answer, 1)
	go func() {
		resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
		if err != nil {
			got <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{resp: resp, body: string(b)}
	}()
	return got
}

// sendRequest sends req on a connection of its own and reads the answer.
func sendRequest(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Every node fails its status probe but answers HTTP on /repository/:
// traffic goes there anyway, with a "fail open" log line.
func TestFailOpen(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/service/rest/v1/status") {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}
	a, b := startNode(t, h), startNode(t, h)
	logs := &testnet.Buffer{}
	addr, up := haProxy(t, logs, 0, a, b)
	waitUntil(t, "nodes down", func() bool { ok, _ := up.Set().Readable(false); return !ok })
	resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil)
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("%s %q\n%s", resp.Status, body, logs)
	}
	if !strings.Contains(logs.String(), "fail open") {
		t.Fatalf("no fail open line:\n%s", logs)
	}
}

// A manifest PUT is buffered and sent again to the next writable node when
// the first answers 503; a blob PATCH whose body was sent never moves.
func TestManifestPutReplayed(t *testing.T) {
	var got atomic.Pointer[string]
	status := func(w http.ResponseWriter, r *http.Request) bool {
		return strings.Contains(r.URL.Path, "/service/rest/v1/status")
	}
	bad := func(w http.ResponseWriter, r *http.Request) {
		if status(w, r) {
			return
		}
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	good := func(w http.ResponseWriter, r *http.Request) {
		if status(w, r) {
			return
		}
		b, _ := io.ReadAll(r.Body)
		s := string(b)
		got.Store(&s)
		w.WriteHeader(http.StatusCreated)
	}
	a, b := startNode(t, bad), startNode(t, good)
	addr, up := haProxy(t, io.Discard, 0, a, b)
	manifest := `{"schemaVersion":2}`
	for i := 0; i < 50 && a.hits.Load() == 0; i++ {
		resp, body := send(t, addr, http.MethodPut, "/v2/app/manifests/1", strings.NewReader(manifest))
		if resp.StatusCode != http.StatusCreated || *got.Load() != manifest {
			t.Fatalf("PUT: %s %s", resp.Status, body)
		}
	}
	if a.hits.Load() == 0 {
		t.Fatal("the failing node was never tried")
	}
	if n := up.replay.held.Load(); n != 0 {
		t.Fatalf("%d bytes of the replay budget still held after the requests", n)
	}
}

// Beyond the replay budget a manifest PUT streams to its first node and,
// its body sent, does not move on: Nexus's 503 reaches the client.
func TestManifestPutBeyondReplayBudget(t *testing.T) {
	status := func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/service/rest/v1/status") }
	var good atomic.Int64
	a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !status(r) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	b := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !status(r) {
			io.Copy(io.Discard, r.Body)
			good.Add(1)
			w.WriteHeader(http.StatusCreated)
		}
	})
	addr, up := haProxy(t, io.Discard, 0, a, b)
	if !up.replay.take(maxReplayTotal) {
		t.Fatal("budget not available")
	}
	for i := 0; i < 50 && a.hits.Load() == 0; i++ {
		before := good.Load()
		resp, body := send(t, addr, http.MethodPut, "/v2/app/manifests/1", strings.NewReader(`{"schemaVersion":2}`))
		switch {
		case a.hits.Load() == 0 && resp.StatusCode == http.StatusCreated && good.Load() == before+1:
		case a.hits.Load() > 0 && resp.StatusCode == http.StatusServiceUnavailable && good.Load() == before:
		default:
			t.Fatalf("PUT: %s %s (failing node's PUTs %d; good node's %d -> %d)", resp.Status, body, a.hits.Load(), before, good.Load())
		}
	}
	if a.hits.Load() == 0 {
		t.Fatal("the failing node was never tried")
	}
	if n := up.replay.held.Load(); n != maxReplayTotal {
		t.Fatalf("replay budget held %d, want the test's own %d", n, maxReplayTotal)
	}
}

// With one node nothing can be sent again, so a manifest PUT streams:
// Nexus's early 401 reaches a client that has sent none of its body, where
// holding the body first would wait for all of it.
func TestManifestPutStreamsToOneNode(t *testing.T) {
	n := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	addr, up := haProxy(t, io.Discard, 0, n)
	pr, pw := io.Pipe()
	defer pw.Close()
	req := teamRequest(addr, http.MethodPut, "/v2/app/manifests/1", pr)
	req.ContentLength = 1 << 20
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		got <- answer{resp, err}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatal(a.err)
		}
		a.resp.Body.Close()
		if a.resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("PUT: %s: want Nexus's 401 before the body", a.resp.Status)
		}
	case <-time.After(10 * time.Second):
		pw.CloseWithError(errors.New("test over"))
		t.Fatal("no answer in 10 s with none of the body sent: nexmux holds the body before asking Nexus")
	}
	if n := up.replay.held.Load(); n != 0 {
		t.Fatalf("%d bytes of the replay budget held with one node", n)
	}
}

// --upstream-max-conns: beyond the bound a request waits briefly, then gets
// a JSON 503 with Retry-After.
func TestUpstreamPoolOverflow(t *testing.T) {
	release := make(chan struct{})
	n := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") {
			<-release
		}
	})
	addr, _ := haProxy(t, io.Discard, 1, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil)
	}()
	waitUntil(t, "the first request at the node", func() bool { return n.hits.Load() == 1 })
	resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/2", nil)
	close(release)
	<-done
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "UNAVAILABLE") {
		t.Fatalf("overflow: %s %q %s", resp.Status, resp.Header.Get("Retry-After"), body)
	}
	if n.hits.Load() != 1 {
		t.Fatalf("%d requests reached the node", n.hits.Load())
	}
}

// A request waiting on a node found down moves to the next node; on the
// last node it may use, it keeps waiting: there is nowhere to move, and the
// answer may still come (a Nexus paused by a long collection answers late).
func TestNodeFoundDownWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	type node struct {
		*haNode
		statusFails atomic.Bool
	}
	var nodes [2]*node
	for i := range nodes {
		nd := &node{}
		name := string(rune('a' + i))
		nd.haNode = startNode(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/service/rest/v1/status") {
				if nd.statusFails.Load() {
					w.WriteHeader(http.StatusInternalServerError)
				}
				return
			}
			<-release
			io.WriteString(w, "ok from "+name)
		})
		nodes[i] = nd
	}
	addr, up := haProxy(t, io.Discard, 0, nodes[0].haNode, nodes[1].haNode)
	type answer struct {
		status int
		body   string
	}
	got := make(chan answer, 1)
	go func() {
		resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil)
		got <- answer{resp.StatusCode, body}
	}()
	hit := func(n *node) func() bool { return func() bool { return n.hits.Load() > 0 } }
	waitUntil(t, "the request at a node", func() bool { return hit(nodes[0])() || hit(nodes[1])() })
	first, second := nodes[0], nodes[1]
	if !hit(first)() {
		first, second = second, first
	}
	first.statusFails.Store(true)
	waitUntil(t, "the request moved to the other node", hit(second))
	second.statusFails.Store(true)
	waitUntil(t, "both nodes found down", func() bool { ok, _ := up.Set().Readable(false); return !ok })
	select {
	case a := <-got:
		t.Fatalf("the request on its last node was given up when the node was found down: %d %q", a.status, a.body)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	a := <-got
	if a.status != http.StatusOK || !strings.HasPrefix(a.body, "ok from ") || second.hits.Load() != 1 {
		t.Fatalf("got %d %q (hits on the last node %d)", a.status, a.body, second.hits.Load())
	}
}

// The time a request with a body takes to its answer is mostly the client's
// upload, not the node's speed: a slow 1.5 s PATCH on one node must not
// move that node's time-to-headers average, or least-loaded reads would
// shun it as if it answered in 1.5 s.
func TestSlowUploadDoesNotMakeItsNodeSlow(t *testing.T) {
	var patches [2]atomic.Int64
	handler := func(i int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch {
				patches[i].Add(1)
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusAccepted)
				return
			}
			if strings.Contains(r.URL.Path, "/service/rest/v1/status") {
				return // 200: both nodes healthy, so neither is found down under the PATCH
			}
			w.WriteHeader(http.StatusNoContent) // the "who knows this upload" GET
		}
	}
	nodes := []*haNode{startNode(t, handler(0)), startNode(t, handler(1))}
	addr, up := haProxy(t, io.Discard, 0, nodes...)
	// Both averages at 1 ms: only a request through the proxy moves them.
	for _, n := range nodes {
		for range 16 {
			up.Set().ByHost(n.addr).ObserveLatency(time.Millisecond)
		}
	}
	pr, pw := io.Pipe()
	go func() {
		for range 3 {
			pw.Write(make([]byte, 1024))
			time.Sleep(500 * time.Millisecond)
		}
		pw.Close()
	}()
	if resp, body := send(t, addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", pr); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %s %s", resp.Status, body)
	}
	slow := nodes[0]
	if patches[1].Load() == 1 {
		slow = nodes[1]
	}
	// One 1.5 s sample would move a 1 ms average by about 190 ms.
	if lat := up.Set().ByHost(slow.addr).Latency(); lat > 50*time.Millisecond {
		t.Fatalf("the node that took a slow upload averages %v to headers", lat)
	}
}
