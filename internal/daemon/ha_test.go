package daemon_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
	"github.com/nexmux/nexmux/upstream"
)

func haConfig() config.Config {
	return config.Config{Route: []string{"team-a." + stack.Domain + "=pull:team-a,push:team-a-hosted"}, HealthInterval: 100 * time.Millisecond}
}

// replica starts one more nexmux with st's configuration: a replica of the
// same Deployment, sharing nothing with st's daemon.
func replica(t *testing.T, st *stack.Stack) (string, *daemon.Daemon) {
	t.Helper()
	addr, d, _ := replicaOf(t, st, nil, "")
	return addr, d
}

// roundRobin is a client transport that sends each request on a new
// connection to the next replica.
func roundRobin(st *stack.Stack, addrs func() []string, dials *atomic.Int64) *http.Transport {
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			i := dials.Add(1)
			as := addrs()
			c, err := dialTLS(ctx, as[int(i)%len(as)], host, st)
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
				// A connection to a replica just as it was dropped (refused,
				// or reset in the handshake from its closing backlog): a
				// load balancer redispatches it to one still listed.
				as = addrs()
				return dialTLS(ctx, as[int(i)%len(as)], host, st)
			}
			return c, err
		},
		DisableKeepAlives: true,
	}
}

func dialTLS(ctx context.Context, addr, serverName string, st *stack.Stack) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, &tls.Config{RootCAs: st.Pool(), ServerName: serverName, NextProtos: []string{"http/1.1"}})
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// uploadNodes maps every upload session uuid seen in the node logs to the
// nodes that served requests on it.
func uploadNodes(nodes []*fixtures.Node) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, n := range nodes {
		for _, rq := range n.Requests() {
			i := strings.Index(rq.Path, "/blobs/uploads/")
			if i < 0 {
				continue
			}
			uuid := rq.Path[i+len("/blobs/uploads/"):]
			if uuid == "" {
				continue
			}
			if out[uuid] == nil {
				out[uuid] = map[string]int{}
			}
			out[uuid][n.Name()]++
			if strings.Contains(rq.RawQuery, "_nexmux") {
				out[uuid]["tag reached Nexus"]++
			}
		}
	}
	return out
}

func haPush(t *testing.T, ref string, img v1.Image, tr http.RoundTripper) error {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return remote.Write(r, img, remote.WithContext(t.Context()), remote.WithTransport(tr),
		remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}))
}

func pullDigest(t *testing.T, ref string, tr http.RoundTripper) (v1.Hash, error) {
	t.Helper()
	if _, err := name.ParseReference(ref); err != nil {
		t.Fatal(err)
	}
	return pullDigestCtx(t.Context(), ref, tr)
}

// Three replicas take a chunked multi-layer push round-robin, one request
// per new connection: every upload's requests land on the node that opened
// it, the tag never reaches Nexus, and the pull verifies.
func TestHAReplicasRoundRobinPush(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	a2, _ := replica(t, st)
	a3, d3 := replica(t, st)
	var mu sync.Mutex
	addrs := []string{st.Addr, a2, a3}
	killAt := int64(-1)
	var dials atomic.Int64
	tr := roundRobin(st, func() []string {
		mu.Lock()
		defer mu.Unlock()
		if dials.Load() == killAt {
			// The load balancer drops the replica as it dies.
			addrs = addrs[:2]
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_ = d3.Shutdown(ctx)
			}()
		}
		return addrs
	}, &dials)
	img, err := random.Image(256<<10, 4)
	if err != nil {
		t.Fatal(err)
	}
	ref := st.Host("team-a") + "/ha/app:1"
	if err := haPush(t, ref, img, tr); err != nil {
		t.Fatal(err)
	}
	sessions := uploadNodes(st.NexusNodes)
	if len(sessions) == 0 {
		t.Fatal("no upload session in the node logs")
	}
	for uuid, by := range sessions {
		if by["tag reached Nexus"] > 0 {
			t.Errorf("upload %s: the _nexmux tag reached Nexus", uuid)
		}
		if len(by) != 1 {
			t.Errorf("upload %s served by several nodes: %v", uuid, by)
		}
		for _, n := range by {
			if n < 2 {
				t.Errorf("upload %s: no follow-up request (%v): the push was not chunked", uuid, by)
			}
		}
	}
	want, _ := img.Digest()
	got, err := pullDigest(t, ref, tr)
	if err != nil || got != want {
		t.Fatalf("pull: %v %v, want %s", got, err, want)
	}
	if dials.Load() < 10 {
		t.Fatalf("only %d connections: not round-robin per request", dials.Load())
	}

	// One replica dies mid-push: the push still finishes.
	img2, _ := random.Image(256<<10, 4)
	mu.Lock()
	killAt = dials.Load() + 7
	mu.Unlock()
	if err := haPush(t, st.Host("team-a")+"/ha/app:2", img2, tr); err != nil {
		t.Fatal(err)
	}
	if dials.Load() <= killAt {
		t.Fatalf("the push ended after %d connections, before the replica was killed", dials.Load())
	}
	want2, _ := img2.Digest()
	if got, err := pullDigest(t, st.Host("team-a")+"/ha/app:2", tr); err != nil || got != want2 {
		t.Fatalf("pull 2: %v %v", got, err)
	}
}

// blobReaders maps each blob path the nodes' logs show read (GET) to the
// names of the nodes that served it.
func blobReaders(st *stack.Stack) map[string]map[string]bool {
	by := map[string]map[string]bool{}
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if rq.Method == http.MethodGet && strings.Contains(rq.Path, "/blobs/sha256:") {
				if by[rq.Path] == nil {
					by[rq.Path] = map[string]bool{}
				}
				by[rq.Path][n.Name()] = true
			}
		}
	}
	return by
}

// Reads by digest stay on one rendezvous node; a node that goes down
// loses its reads at once and pulls keep working.
func TestHANodeDownReadsMove(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	img, _ := random.Image(64<<10, 3)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	tr := st.Transport()
	ref := st.Host("team-a") + "/base:1"
	want, _ := img.Digest()
	for range 2 {
		if got, err := pullDigest(t, ref, tr); err != nil || got != want {
			t.Fatalf("pull: %v %v", got, err)
		}
	}
	blobNodes := blobReaders(st)
	for p, ns := range blobNodes {
		if len(ns) != 1 {
			t.Errorf("blob %s served by %v: not one rendezvous node", p, ns)
		}
	}
	for _, n := range st.NexusNodes {
		if err := n.SetDown(true); err != nil {
			t.Fatal(err)
		}
		n.ResetRequests()
		if got, err := pullDigest(t, ref, tr); err != nil || got != want {
			t.Fatalf("pull with %s down: %v %v", n.Name(), got, err)
		}
		if len(n.Requests()) != 0 {
			t.Errorf("%s is down but logged requests", n.Name())
		}
		if err := n.SetDown(false); err != nil {
			t.Fatal(err)
		}
	}
}

// Read-only nodes: reads work, a write is refused with 503 and Retry-After
// before its body is read, and the connection is closed.
func TestHAReadOnlyRefusesWritesEarly(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	for _, n := range st.NexusNodes {
		n.SetReadOnly(true)
	}
	haWait(t, "nodes seen read-only", func() bool {
		return st.Runtime.Upstreams.Set().Table()[0].State == "read-only" && st.Runtime.Upstreams.Set().Table()[1].State == "read-only"
	})
	tr := st.Transport()
	want, _ := img.Digest()
	if got, err := pullDigest(t, st.Host("team-a")+"/base:1", tr); err != nil || got != want {
		t.Fatalf("pull while read-only: %v %v", got, err)
	}
	// containerd's token request, an OAuth2 form POST, is a read: it
	// falls back to GET only on 401, 404 or 405, so a 503 failed its pulls.
	form := "grant_type=password&client_id=containerd-client&service=x&scope=repository%3Abase%3Apull&username=" + stack.User + "&password=" + stack.Password
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+st.Host("team-a")+"/v2/token", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable || strings.Contains(string(b), "no writes") {
		t.Fatalf("token POST while read-only: %s %s", resp.Status, b)
	}
	// A 1 GiB PATCH: the answer comes before the body is read.
	var sent atomic.Int64
	body := &countReader{n: &sent, left: 1 << 30}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPatch, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/abc", body)
	req.ContentLength = 1 << 30
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err = (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		// The server closed the connection while the client still wrote:
		// the refusal may surface as a write error; the byte count below
		// still holds.
		t.Logf("PATCH: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusNotFound {
			t.Fatalf("PATCH while read-only: %s", resp.Status)
		}
	}
	// What nexmux read of it (kernel buffers hold more of what the
	// client wrote).
	if n := requestBytes(t, st); n >= 1<<20 {
		t.Fatalf("nexmux read %.0f bytes of a refused 1 GiB PATCH", n)
	}
	// A new upload: 503 UNAVAILABLE with Retry-After.
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err = (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "UNAVAILABLE") {
		t.Fatalf("POST while read-only: %s Retry-After %q close %v %s", resp.Status, resp.Header.Get("Retry-After"), resp.Close, b)
	}
}

// An upload opened before every node went read-only: its next 1 GiB PATCH
// is a write like any other, refused by nexmux with 503 UNAVAILABLE and
// Retry-After before its body is read, not streamed to the frozen node.
func TestHAReadOnlyRefusesUploadFollowUpEarly(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	tr := st.Transport()
	cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(loc, "_nexmux=") {
		t.Fatalf("POST: %s Location %q", resp.Status, loc)
	}
	if strings.HasPrefix(loc, "/") {
		loc = "https://" + st.Host("team-a") + loc
	}
	for _, n := range st.NexusNodes {
		n.SetReadOnly(true)
	}
	haWait(t, "nodes seen read-only", func() bool {
		tb := st.Runtime.Upstreams.Set().Table()
		return tb[0].State == "read-only" && tb[1].State == "read-only"
	})
	before := requestBytes(t, st)
	var sent atomic.Int64
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPatch, loc, &countReader{n: &sent, left: 1 << 30})
	req.ContentLength = 1 << 30
	req.Header.Set("Content-Type", "application/octet-stream")
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatalf("PATCH: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "UNAVAILABLE") {
		t.Errorf("PATCH of an open upload while read-only: %s Retry-After %q %s", resp.Status, resp.Header.Get("Retry-After"), b)
	}
	if n := requestBytes(t, st) - before; n >= 1<<20 {
		t.Errorf("nexmux read %.0f bytes of a refused 1 GiB PATCH", n)
	}
}

// All nodes down: 503 UNAVAILABLE with Retry-After, at once.
func TestHAAllDown(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	for _, n := range st.NexusNodes {
		if err := n.SetDown(true); err != nil {
			t.Fatal(err)
		}
	}
	haWait(t, "nodes seen down", func() bool { ok, _ := st.Runtime.Upstreams.Set().Readable(false); return !ok })
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil)
	resp, err := (&http.Client{Transport: st.Transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "UNAVAILABLE") {
		t.Fatalf("%s %q %s", resp.Status, resp.Header.Get("Retry-After"), b)
	}
}

type countReader struct {
	n    *atomic.Int64
	left int64
}

func (c *countReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(b)), c.left)
	c.left -= n
	c.n.Add(n)
	return int(n), nil
}

func haWait(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = fmt.Sprint

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func requestBytes(t *testing.T, st *stack.Stack) float64 {
	t.Helper()
	mfs, err := st.Daemon.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == "nexmux_request_bytes_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func counterValue(t *testing.T, d *daemon.Daemon, metric string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := d.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			} else if m.GetGauge() != nil {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// A blob body that breaks mid-stream continues from another node: the
// client gets one intact response and its digest verifies.
func TestHABlobDownloadResumes(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	img, _ := random.Image(1<<20, 1) // two blobs: at most two nodes serve them
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	// Learn which nodes serve the layers, then cut their bodies.
	if got, err := pullDigest(t, st.Host("team-a")+"/base:1", st.Transport()); err != nil || got != want {
		t.Fatalf("pull: %v %v", got, err)
	}
	cut := 0
	for i, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if rq.Method == http.MethodGet && strings.Contains(rq.Path, "/blobs/") {
				n.SetCutBlobAfter(int64(100<<10 + i*(50<<10)))
				cut++
				break
			}
		}
		n.ResetRequests()
	}
	if cut == 0 || cut == len(st.NexusNodes) {
		t.Fatalf("%d nodes served blobs", cut)
	}
	if got, err := pullDigest(t, st.Host("team-a")+"/base:1", st.Transport()); err != nil || got != want {
		t.Fatalf("pull: %v %v", got, err)
	}
	if n := counterValue(t, st.Daemon, "nexmux_upstream_resumes_total", nil); n == 0 {
		t.Fatal("no resume counted")
	}
	ranged := 0
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if rg := rq.Header.Get("Range"); rg != "" && strings.Contains(rq.Path, "/blobs/") {
				ranged++
				if !strings.HasPrefix(rg, "bytes=") {
					t.Errorf("%s: Range %q", n.Name(), rg)
				}
			}
		}
	}
	if ranged == 0 {
		t.Fatal("no ranged blob GET in the node logs")
	}
}

// h1 is a client transport speaking HTTP/1.1 to the stack (so a closed
// connection shows as resp.Close).
func h1(st *stack.Stack) *http.Transport {
	tr := st.Transport()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return tr
}

func do(t *testing.T, tr http.RoundTripper, method, url string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// openUpload opens an upload of ha/app on team-a through tr and returns
// its Location, the node that holds it and its uuid.
func openUpload(t *testing.T, st *stack.Stack, tr http.RoundTripper) (loc string, owner *fixtures.Node, uuid string) {
	t.Helper()
	resp, _ := do(t, tr, http.MethodPost, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s", resp.Status)
	}
	loc = resp.Header.Get("Location")
	owner, uuid = sessionNode(t, st, loc)
	return loc, owner, uuid
}

// sessionNode returns the node whose log holds the upload uuid of loc.
func sessionNode(t *testing.T, st *stack.Stack, loc string) (*fixtures.Node, string) {
	t.Helper()
	i := strings.Index(loc, "/blobs/uploads/")
	uuid := loc[i+len("/blobs/uploads/"):]
	uuid, _, _ = strings.Cut(uuid, "?")
	for _, n := range st.NexusNodes {
		req, _ := http.NewRequest(http.MethodGet, n.URL()+"/repository/team-a-hosted/v2/ha/app/blobs/uploads/"+uuid, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return n, uuid
		}
	}
	t.Fatalf("no node knows upload %s", uuid)
	return nil, ""
}

// An upload whose node has just stopped (refuses connections, not yet
// seen down by the probes) gets 404 BLOB_UPLOAD_UNKNOWN on its first
// follow-up, as once the probes know, not a 503 that clients retry.
func TestHAUploadOnANodeJustGone(t *testing.T) {
	cfg := haConfig()
	cfg.HealthInterval = time.Hour // the probes must not see it first
	st := stack.Start(t, stack.Options{Nodes: 3, Config: cfg})
	tr := h1(st)
	loc, owner, _ := openUpload(t, st, tr)
	if err := owner.SetDown(true); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, tr, http.MethodGet, loc, nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "BLOB_UPLOAD_UNKNOWN") {
		t.Fatalf("first follow-up after its node stopped: %s %s", resp.Status, body)
	}
}

// Follow-ups with a tampered tag are found by asking the nodes; an upload
// whose node is gone gets 404 BLOB_UPLOAD_UNKNOWN before its body is read,
// with the connection closed.
func TestHAUploadAffinityFallbacks(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	tr := h1(st)
	base := "https://" + st.Host("team-a") + "/v2/ha/app/blobs/uploads/"
	resp, _ := do(t, tr, http.MethodPost, base, nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(loc, "_nexmux=") {
		t.Fatalf("POST: %s Location %q", resp.Status, loc)
	}
	owner, uuid := sessionNode(t, st, loc)

	// Tampered tag: asked, continues on the owner.
	tampered := strings.Replace(loc, "_nexmux=", "_nexmux=AA", 1)
	for _, n := range st.NexusNodes {
		n.ResetRequests()
	}
	resp, body := do(t, tr, http.MethodPatch, tampered, strings.NewReader("hello"))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH with a tampered tag: %s %s", resp.Status, body)
	}
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if rq.Method == http.MethodPatch && n != owner {
				t.Errorf("PATCH of %s went to %s, opened on %s", uuid, n.Name(), owner.Name())
			}
			if strings.Contains(rq.RawQuery, "_nexmux") {
				t.Errorf("tag reached %s: %q", n.Name(), rq.RawQuery)
			}
		}
	}
	if counterValue(t, st.Daemon, "nexmux_upload_affinity_total", map[string]string{"result": "tampered"}) != 1 ||
		counterValue(t, st.Daemon, "nexmux_upload_affinity_total", map[string]string{"result": "asked"}) != 1 {
		t.Error("tampered/asked not counted")
	}
	// The fresh Location carries a valid tag: a hit.
	loc = resp.Header.Get("Location")
	resp, body = do(t, tr, http.MethodGet, loc, nil)
	if resp.StatusCode != http.StatusNoContent || counterValue(t, st.Daemon, "nexmux_upload_affinity_total", map[string]string{"result": "hit"}) != 1 {
		t.Fatalf("GET with the tag: %s %s", resp.Status, body)
	}

	// The owner dies: nobody knows the session.
	if err := owner.SetDown(true); err != nil {
		t.Fatal(err)
	}
	haWait(t, "owner seen down", func() bool {
		for _, n := range st.Runtime.Upstreams.Set().Table() {
			if n.Node == owner.Addr() && n.State == "down" {
				return true
			}
		}
		return false
	})
	before := requestBytes(t, st)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, loc, &countReader{n: new(atomic.Int64), left: 1 << 30})
	req.ContentLength = 1 << 30
	// The client waits for the answer before its body (a client that does
	// not may see its write reset instead of the 404).
	req.Header.Set("Expect", "100-continue")
	tr.ExpectContinueTimeout = 5 * time.Second
	req.SetBasicAuth(stack.User, stack.Password)
	r2, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("PATCH to a gone node: %v", err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "BLOB_UPLOAD_UNKNOWN") || !r2.Close {
		t.Fatalf("PATCH to a gone node: %s close=%v %s", r2.Status, r2.Close, b)
	}
	if n := requestBytes(t, st) - before; n >= 1<<20 {
		t.Fatalf("read %.0f bytes of the refused PATCH", n)
	}
	if counterValue(t, st.Daemon, "nexmux_upload_affinity_total", map[string]string{"result": "unknown"}) != 1 {
		t.Error("unknown not counted")
	}
}

func reposOn(n *fixtures.Node) int {
	c := 0
	for _, rq := range n.Requests() {
		if rq.Repo != "" {
			c++
		}
	}
	return c
}

// A node answering 503 on /repository/ while its status says 200: reads
// move to another node before the response starts, and after 5 in a row
// the node is ejected and gets no more reads.
func TestHARepository503FailsOverAndEjects(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	bad := st.NexusNodes[0]
	bad.SetRepositoryUnavailable(true)
	tr := st.Transport()
	for i := 0; i < 300 && reposOn(bad) < 5; i++ {
		resp, body := do(t, tr, http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("manifest GET: %s %s", resp.Status, body)
		}
	}
	if n := reposOn(bad); n != 5 {
		t.Fatalf("%s answered %d repository requests: want 5, then ejected", bad.Name(), n)
	}
	bad.ResetRequests()
	for range 20 {
		resp, body := do(t, tr, http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("manifest GET: %s %s", resp.Status, body)
		}
	}
	if n := reposOn(bad); n != 0 {
		t.Fatalf("the ejected node still got %d reads", n)
	}
	if counterValue(t, st.Daemon, "nexmux_upstream_failovers_total", map[string]string{"reason": "status"}) == 0 {
		t.Fatal("no failover counted")
	}
	var ejected bool
	for _, n := range st.Runtime.Upstreams.Set().Table() {
		if n.Node == bad.Addr() && !n.EjectedUntil.IsZero() {
			ejected = true
		}
	}
	if !ejected {
		t.Fatal("node not ejected")
	}
}

// A blackholed node: a read waiting on it moves once the probes find it
// down, and later reads never reach it.
func TestHABlackholeReadsMove(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	hole := st.NexusNodes[0]
	hole.SetBlackhole(true)
	tr := st.Transport()
	for range 6 {
		resp, body := do(t, tr, http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("manifest GET: %s %s", resp.Status, body)
		}
	}
	haWait(t, "blackhole seen down", func() bool {
		for _, n := range st.Runtime.Upstreams.Set().Table() {
			if n.Node == hole.Addr() {
				return n.State == "down"
			}
		}
		return false
	})
	hole.ResetRequests()
	for range 6 {
		resp, body := do(t, tr, http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("manifest GET: %s %s", resp.Status, body)
		}
	}
	if n := reposOn(hole); n != 0 {
		t.Fatalf("%d reads went to the known-down blackholed node", n)
	}
}

// /readyz from the health table (and ?writable), GET /upstreams.
func TestHAReadyzAndUpstreams(t *testing.T) {
	cfg := haConfig()
	cfg.MetricsListen = "127.0.0.1:0"
	st := stack.Start(t, stack.Options{Nodes: 2, Config: cfg})
	m := "http://" + st.Daemon.Addr("metrics").String()
	get := func(path string) (int, string) {
		resp, err := http.Get(m + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	haWait(t, "ready", func() bool { c, _ := get("/readyz?writable"); return c == 200 })
	for _, n := range st.NexusNodes {
		n.SetReadOnly(true)
	}
	haWait(t, "not writable", func() bool { c, _ := get("/readyz?writable"); return c == 503 })
	for _, q := range []string{"", "?writable=false", "?writable=0"} {
		if c, b := get("/readyz" + q); c != 200 {
			t.Fatalf("readyz%s while read-only: %d %s", q, c, b)
		}
	}
	for _, q := range []string{"?writable=", "?writable=true", "?writable=1"} {
		// Nexus answers, but takes no writes: the body says which.
		if c, b := get("/readyz" + q); c != 503 || b != "not ready: no Nexus node takes writes\n" {
			t.Fatalf("readyz%s while read-only: %d %q", q, c, b)
		}
	}
	if err := st.NexusNodes[0].SetDown(true); err != nil {
		t.Fatal(err)
	}
	haWait(t, "node down in the table", func() bool {
		_, b := get("/upstreams")
		return strings.Contains(b, `"state": "down"`) && strings.Contains(b, `"state": "read-only"`)
	})
	_, b := get("/upstreams")
	for _, want := range []string{st.NexusNodes[0].Addr(), st.NexusNodes[1].Addr(), `"since"`, `"inFlight"`, `"lastError"`} {
		if !strings.Contains(b, want) {
			t.Errorf("/upstreams lacks %s:\n%s", want, b)
		}
	}
	_, metricsText := get("/metrics")
	for _, want := range []string{
		`nexmux_upstream_node_state{node="` + st.NexusNodes[0].Addr() + `",state="down"} 1`,
		`nexmux_upstream_in_flight{node="` + st.NexusNodes[1].Addr() + `"} 0`,
		`nexmux_upstream_resumes_total 0`,
		`nexmux_upstream_paced_resumes_total 0`,
		`nexmux_upload_affinity_total{result="hit"} 0`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// --drain-upstream and a reloaded node list: a drained or removed node
// takes no new reads while the upload tagged for it finishes there; a node
// listed again joins after passing its probes.
func TestHADrainAndReloadNodes(t *testing.T) {
	file, writeFile := configFile(t)
	writeFile("drain-timeout: 30s\n")
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig(), ConfigFile: file})
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	tr := h1(st)
	loc, owner, _ := openUpload(t, st, tr)
	var others []string
	for _, n := range st.NexusNodes {
		if n != owner {
			others = append(others, n.URL())
		}
	}
	check := func(step string) {
		t.Helper()
		owner.ResetRequests()
		for range 20 {
			if r, b := do(t, tr, http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil); r.StatusCode != 200 {
				t.Fatalf("%s: read %s %s", step, r.Status, b)
			}
		}
		if n := reposOn(owner); n != 0 {
			t.Fatalf("%s: %d new reads went to %s", step, n, owner.Name())
		}
		if r, b := do(t, tr, http.MethodGet, loc, nil); r.StatusCode != http.StatusNoContent || reposOn(owner) == 0 {
			t.Fatalf("%s: the tagged upload did not finish on its node: %s %s", step, r.Status, b)
		}
	}
	writeFile("drain-upstream: " + owner.URL() + "\n")
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	check("drained")
	writeFile("upstream: [" + strings.Join(others, ", ") + "]\n")
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	check("removed")
	writeFile("drain-timeout: 30s\n") // all three again
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	haWait(t, "the node rejoins", func() bool {
		for _, n := range st.Runtime.Upstreams.Set().Table() {
			if n.Node == owner.Addr() && n.Joined && !n.Removed {
				return true
			}
		}
		return false
	})
	owner.ResetRequests()
	for i := 0; i < 200 && reposOn(owner) == 0; i++ {
		do(t, tr, http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil)
	}
	if reposOn(owner) == 0 {
		t.Fatal("the rejoined node gets no reads")
	}
	// A drain of a node that is not listed is refused whole.
	writeFile("drain-upstream: http://127.0.0.1:1\n")
	if err := st.Daemon.Reload(); err == nil || !strings.Contains(err.Error(), "drain-upstream") {
		t.Fatalf("reload with a drain of an unknown node: %v", err)
	}
}

// A node removed by reload drains: the upload streaming to it goes on, and
// /upstreams lists it (removed, with its inFlight). The metrics keep its
// series as well, or the drain that tells when the node may go is seen in
// one place and not in the other.
func TestHARemovedNodeDrainInMetrics(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("drain-timeout: 30s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig(), ConfigFile: file})
	tr := h1(st)
	loc, owner, _ := openUpload(t, st, tr)
	if strings.HasPrefix(loc, "/") {
		loc = "https://" + st.Host("team-a") + loc
	}
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, loc, pr)
	req.SetBasicAuth(stack.User, stack.Password)
	done := make(chan error, 1)
	go func() {
		r, err := tr.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode != http.StatusAccepted {
				err = fmt.Errorf("PATCH: %s", r.Status)
			}
		}
		done <- err
	}()
	if _, err := pw.Write([]byte("first part;")); err != nil {
		t.Fatal(err)
	}
	row := func() upstream.NodeInfo {
		for _, n := range st.Runtime.Upstreams.Set().Table() {
			if n.Node == owner.Addr() {
				return n
			}
		}
		return upstream.NodeInfo{}
	}
	haWait(t, "the PATCH in flight on its node", func() bool { return row().InFlight == 1 })
	writeUpstreamsWithout(t, file, st, owner)
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := row(); r.Node == "" || !r.Removed || r.InFlight != 1 {
		t.Fatalf("/upstreams after the removal: %+v", r)
	}
	if v := counterValue(t, st.Daemon, "nexmux_upstream_in_flight", map[string]string{"node": owner.Addr()}); v != 1 {
		t.Errorf("nexmux_upstream_in_flight for the removed node still draining: %v, want 1 (as /upstreams says)", v)
	}
	if v := counterValue(t, st.Daemon, "nexmux_upstream_node_state", map[string]string{"node": owner.Addr(), "state": "writable"}); v != 1 {
		t.Errorf("nexmux_upstream_node_state for the removed node still draining: %v, want writable 1", v)
	}
	pw.Write([]byte("rest"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// writeUpstreamsWithout writes a config file listing every node of st but
// gone as --upstream: a reload of it removes that node.
func writeUpstreamsWithout(t *testing.T, file string, st *stack.Stack, gone *fixtures.Node) {
	t.Helper()
	var others []string
	for _, n := range st.NexusNodes {
		if n != gone {
			others = append(others, n.URL())
		}
	}
	if err := os.WriteFile(file, []byte("upstream: ["+strings.Join(others, ", ")+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Only GET and HEAD read the node table: another method gets 405 naming
// them, not the catch-all's 404, which reads as "no such endpoint here".
func TestUpstreamsOtherMethodsGet405(t *testing.T) {
	cfg := haConfig()
	cfg.MetricsListen = "127.0.0.1:0"
	st := stack.Start(t, stack.Options{Nodes: 2, Config: cfg})
	m := "http://" + st.Daemon.Addr("metrics").String()
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(method, m+"/upstreams", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /upstreams: %s, Allow %q, %q; want 405, Allow \"GET, HEAD\"", method, resp.Status, resp.Header.Get("Allow"), b)
		}
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, m+"/upstreams", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s /upstreams: %s, Content-Type %q; want 200 application/json", method, resp.Status, resp.Header.Get("Content-Type"))
		}
	}
}
