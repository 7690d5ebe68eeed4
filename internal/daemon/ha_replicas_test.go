package daemon_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// replicaOf starts one more nexmux with st's configuration changed by
// edit (nil: unchanged) and, with file set, reloading from that YAML file
// applied over it: a replica that shares nothing with st's daemon.
func replicaOf(t *testing.T, st *stack.Stack, edit func(*config.Config), file string) (string, *daemon.Daemon, *config.Runtime) {
	t.Helper()
	c := *st.Runtime.Config
	c.Listen = "127.0.0.1:0"
	c.Cert = []string{filepath.Join(st.CertDir, "server.crt")}
	c.Key = []string{filepath.Join(st.CertDir, "server.key")}
	c.Upstream = slices.Clone(c.Upstream)
	if edit != nil {
		edit(&c)
	}
	build := stack.Builder(c, file)
	b, err := build()
	if err != nil {
		t.Fatal(err)
	}
	opts := daemon.Options{Logger: discardLogger()}
	if file != "" {
		opts.Reload = build
	}
	d, err := daemon.New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	serveDaemon(t, d)
	return d.Addr("listen").String(), d, b
}

// viaReplica is an HTTP/1.1 client transport whose connections all go to
// the replica at addr, whatever name the request is for.
func viaReplica(st *stack.Stack, addr string) *http.Transport {
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, _, a string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(a)
			return dialTLS(ctx, addr, host, st)
		},
		DisableKeepAlives: true,
	}
}

// Two replicas list the nodes in different orders and a token-authenticated
// chunked push alternates between them request by request: every upload
// stays on the node that opened it, and the pull verifies.
func TestHAReplicasNodeOrderPush(t *testing.T) {
	for _, style := range []fixtures.LocationStyle{fixtures.LocationRelative, fixtures.LocationRelativePrefix, fixtures.LocationAbsolute} {
		for _, ctx := range []string{"", "/nexus"} {
			t.Run(style.String()+ctx, func(t *testing.T) { replicasNodeOrderPush(t, fixtures.Config{LocationStyle: style, ContextPath: ctx}) })
		}
	}
}

func replicasNodeOrderPush(t *testing.T, fc fixtures.Config) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig(), Fixture: fc})
	a2, d2, _ := replicaOf(t, st, func(c *config.Config) { slices.Reverse(c.Upstream) }, "")
	var dials atomic.Int64
	tr := roundRobin(st, func() []string { return []string{st.Addr, a2} }, &dials)
	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := st.Host("team-a") + "/ha/order:1"
	if err := haPush(t, ref, img, tr); err != nil {
		t.Fatal(err)
	}
	for uuid, by := range uploadNodes(st.NexusNodes) {
		if len(by) != 1 {
			t.Errorf("upload %s served by several nodes: %v", uuid, by)
		}
	}
	// The push token one replica marked makes the other send the push's
	// existence checks to the hosted repository.
	heads := 0
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if rq.Method == http.MethodHead && rq.Repo != "" {
				heads++
				if rq.Repo != "team-a-hosted" || !strings.HasPrefix(rq.Header.Get("Authorization"), "Bearer ") {
					t.Errorf("push HEAD %s went to %s with %q", rq.Path, rq.Repo, strings.SplitN(rq.Header.Get("Authorization"), " ", 2)[0])
				}
			}
		}
	}
	if heads == 0 {
		t.Error("no HEAD in the push")
	}
	want, _ := img.Digest()
	if got, err := pullDigest(t, ref, tr); err != nil || got != want {
		t.Fatalf("pull: %v %v, want %s", got, err, want)
	}
	for i, d := range []*daemon.Daemon{st.Daemon, d2} {
		if n := affinity(t, d, "hit"); n == 0 {
			t.Errorf("replica %d: no follow-up hit its tag", i)
		}
		for _, res := range []string{"absent", "tampered", "asked", "unknown"} {
			if n := affinity(t, d, res); n != 0 {
				t.Errorf("replica %d: %v follow-ups %s", i, n, res)
			}
		}
	}
}

// A blob download broken when its replica went away resumes through the
// other replica with Range after the node that served it died.
func TestHABlobResumeViaOtherReplica(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	a2, _, _ := replicaOf(t, st, nil, "")
	img, _ := random.Image(1<<20, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	d, _ := ls[0].Digest()
	rc, _ := ls[0].Compressed()
	blob, _ := io.ReadAll(rc)
	u := "https://" + st.Host("team-a") + "/v2/base/blobs/" + d.String()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := viaReplica(st, st.Addr).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	etag := resp.Header.Get("Etag")
	half := make([]byte, len(blob)/2)
	if _, err := io.ReadFull(resp.Body, half); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	killed := 0
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if strings.Contains(rq.Path, "/blobs/") {
				if err := n.SetKilled(true); err != nil {
					t.Fatal(err)
				}
				killed++
				break
			}
		}
	}
	if killed != 1 {
		t.Fatalf("%d nodes served the blob, want 1", killed)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(half)))
	req.Header.Set("If-Range", etag)
	resp, err = viaReplica(st, a2).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || string(append(half, rest...)) != string(blob) {
		t.Fatalf("resume via the other replica: %s %v, %d bytes", resp.Status, err, len(rest))
	}
}

// secretFile writes an --affinity-secret-file the replicas of a test share.
func secretFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Replicas that do not share a tag key (one has a secret file, the other
// not): every follow-up, sent through the replica its Location's did not
// come from, is found by asking the nodes, with the client's token, and a
// crane push crossing between them still completes.
func TestHAReplicasAskWithToken(t *testing.T) {
	for _, style := range []fixtures.LocationStyle{fixtures.LocationRelative, fixtures.LocationAbsolute} {
		for _, ctx := range []string{"", "/nexus"} {
			t.Run(style.String()+ctx, func(t *testing.T) {
				st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig(), Fixture: fixtures.Config{LocationStyle: style, ContextPath: ctx}})
				secret := secretFile(t)
				a2, d2, _ := replicaOf(t, st, func(c *config.Config) { c.AffinitySecretFile = secret }, "")
				// Not round robin: crane's uploads run at once, and each
				// of one upload's follow-ups could land on the replica of
				// its Location, where it hits its tag and nothing is asked.
				tr := &crossing{trs: []http.RoundTripper{viaReplica(st, st.Addr), viaReplica(st, a2)}, last: map[string]int{}}
				img, _ := random.Image(256<<10, 3)
				ref := st.Host("team-a") + "/ha/ask:1"
				if err := haPush(t, ref, img, tr); err != nil {
					t.Fatal(err)
				}
				for uuid, by := range uploadWriters(st.NexusNodes) {
					if len(by) != 1 {
						t.Errorf("upload %s written on several nodes: %v", uuid, by)
					}
				}
				asked := 0.0
				for _, d := range []*daemon.Daemon{st.Daemon, d2} {
					asked += affinity(t, d, "asked")
					if n := affinity(t, d, "hit"); n != 0 {
						t.Errorf("%v follow-ups hit a tag of the other replica: the replicas shared a tag key", n)
					}
				}
				if asked == 0 {
					t.Error("no follow-up was found by asking: the replicas shared a tag key")
				}
				want, _ := img.Digest()
				if got, err := pullDigest(t, ref, tr); err != nil || got != want {
					t.Fatalf("pull: %v %v, want %s", got, err, want)
				}
			})
		}
	}
}

// crossing sends each upload follow-up through the other replica than
// the one that answered its upload's last request, and other requests in
// turn.
type crossing struct {
	trs  []http.RoundTripper
	n    atomic.Int64
	mu   sync.Mutex
	last map[string]int // upload uuid: the replica of its last answer
}

func (c *crossing) RoundTrip(r *http.Request) (*http.Response, error) {
	i := int(c.n.Add(1)) % len(c.trs)
	c.mu.Lock()
	if l, ok := c.last[uploadID(r.URL.Path)]; ok {
		i = (l + 1) % len(c.trs)
	}
	c.mu.Unlock()
	resp, err := c.trs[i].RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if u, perr := url.Parse(resp.Header.Get("Location")); perr == nil {
		if id := uploadID(u.Path); id != "" {
			c.mu.Lock()
			c.last[id] = i
			c.mu.Unlock()
		}
	}
	return resp, nil
}

// uploadID is the upload uuid of a path on .../blobs/uploads/<uuid>, or "".
func uploadID(p string) string {
	i := strings.Index(p, "/blobs/uploads/")
	if i < 0 {
		return ""
	}
	return p[i+len("/blobs/uploads/"):]
}

// uploadWriters maps every upload session uuid to the nodes that got its
// PATCH or PUT (asking a node about a session is a GET, not a write).
func uploadWriters(nodes []*fixtures.Node) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, n := range nodes {
		for _, rq := range n.Requests() {
			i := strings.Index(rq.Path, "/blobs/uploads/")
			if i < 0 || rq.Method != http.MethodPatch && rq.Method != http.MethodPut {
				continue
			}
			uuid := rq.Path[i+len("/blobs/uploads/"):]
			if out[uuid] == nil {
				out[uuid] = map[string]int{}
			}
			out[uuid][n.Name()]++
		}
	}
	return out
}

func affinity(t *testing.T, d *daemon.Daemon, result string) float64 {
	t.Helper()
	return counterValue(t, d, "nexmux_upload_affinity_total", map[string]string{"result": result})
}

// A reload on replica B removes the node an upload opened through replica
// A is on, while A has not reloaded yet (a ConfigMap reaches pods one by
// one). The chunks alternate between the replicas: every one reaches the
// upload's node by its tag, B handing back a tag A can check, so nothing
// is taken for tampered nor asked. An upload opened through B afterwards
// carries B's new key, unknown to A: A asks the nodes once, not at every
// chunk.
func TestHAReplicaReloadKeepsUploadTag(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("drain-timeout: 30s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a2, d2, _ := replicaOf(t, st, nil, file)
	trs := []http.RoundTripper{viaReplica(st, st.Addr), viaReplica(st, a2)}
	ds := []*daemon.Daemon{st.Daemon, d2}
	open := func(via int) string {
		t.Helper()
		resp, body := do(t, trs[via], http.MethodPost, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/", nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST via replica %d: %s %s", via, resp.Status, body)
		}
		return resp.Header.Get("Location")
	}
	counts := func() map[string]float64 {
		m := map[string]float64{}
		for i, d := range ds {
			for _, res := range []string{"hit", "absent", "tampered", "asked", "unknown"} {
				m[fmt.Sprintf("replica %d %s", i, res)] = affinity(t, d, res)
			}
		}
		return m
	}
	loc := open(0)
	owner, _ := sessionNode(t, st, loc)
	writeUpstreamsWithout(t, file, st, owner)
	if err := d2.Reload(); err != nil {
		t.Fatal(err)
	}
	replicaChunks(t, st, trs, loc, owner)
	for k, v := range counts() {
		if v != 0 && !strings.HasSuffix(k, " hit") {
			t.Errorf("upload on the removed node: %s %v, want none", k, v)
		}
	}

	// Opened through B, on a node both list: B signs with its new key.
	before := counts()
	loc = open(1)
	node, _ := sessionNode(t, st, loc)
	replicaChunks(t, st, trs, loc, node)
	after := counts()
	if n := after["replica 0 asked"] - before["replica 0 asked"]; n != 1 {
		t.Errorf("replica A asked the nodes %v times for an upload of 6 chunks, want once", n)
	}
	for _, k := range []string{"replica 0 unknown", "replica 1 unknown", "replica 1 tampered", "replica 1 asked"} {
		if after[k] != before[k] {
			t.Errorf("%s: %v more", k, after[k]-before[k])
		}
	}
}

// replicaChunks sends 6 chunks of the upload at loc, alternating between
// the replicas of trs starting with the second, closes it, and checks that
// every write reached node and the blob reads back.
func replicaChunks(t *testing.T, st *stack.Stack, trs []http.RoundTripper, loc string, node *fixtures.Node) {
	t.Helper()
	abs := func(l string) string {
		if strings.HasPrefix(l, "/") {
			return "https://" + st.Host("team-a") + l
		}
		return l
	}
	var blob []byte
	for _, n := range st.NexusNodes {
		n.ResetRequests()
	}
	send := func(i int, method, loc string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, loc, strings.NewReader(string(body)))
		req.SetBasicAuth(stack.User, stack.Password)
		if method == http.MethodPatch {
			req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", len(blob), len(blob)+len(body)-1))
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		r, err := trs[i%len(trs)].RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode/100 != 2 {
			t.Fatalf("%s %d via replica %d: %s %s", method, i, i%len(trs), r.Status, b)
		}
		return r
	}
	for i := 1; i <= 6; i++ {
		chunk := []byte(fmt.Sprintf("chunk %d of %s;", i, node.Name()))
		loc = send(i, http.MethodPatch, abs(loc), chunk).Header.Get("Location")
		blob = append(blob, chunk...)
	}
	dg := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(blob))}
	send(7, http.MethodPut, abs(loc)+"&digest="+url.QueryEscape(dg.String()), nil)
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if (rq.Method == http.MethodPatch || rq.Method == http.MethodPut) && n != node {
				t.Errorf("a %s of the upload went to %s, opened on %s", rq.Method, n.Name(), node.Name())
			}
		}
	}
	_, got := do(t, trs[0], http.MethodGet, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/"+dg.String(), nil)
	if got != string(blob) {
		t.Fatalf("the blob reads back as %q, want %q", got, blob)
	}
}

// Replica B's reload leaves it one node; an upload opened through replica
// A is on the node B dropped, which then stops. Its first follow-up
// through B gets 404 BLOB_UPLOAD_UNKNOWN, as with several nodes left
// (TestHAUploadOnANodeJustGone), not a 503 saying Nexus is unreachable
// while the node B has answers.
func TestHAReplicaReloadToOneNodeUploadNodeGone(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("drain-timeout: 30s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a2, d2, _ := replicaOf(t, st, nil, file)
	resp, _ := do(t, viaReplica(st, st.Addr), http.MethodPost, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s", resp.Status)
	}
	owner, _ := sessionNode(t, st, loc)
	var other *fixtures.Node
	for _, n := range st.NexusNodes {
		if n != owner {
			other = n
		}
	}
	if err := os.WriteFile(file, []byte("upstream: ["+other.URL()+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d2.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := owner.SetDown(true); err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(loc, "/") {
		loc = "https://" + st.Host("team-a") + loc
	}
	resp, body := do(t, viaReplica(st, a2), http.MethodPatch, loc, strings.NewReader("chunk"))
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "BLOB_UPLOAD_UNKNOWN") {
		t.Fatalf("first follow-up through the one-node replica after the upload's node stopped: %s %s", resp.Status, body)
	}
}

// Nexus sharing upload sessions between nodes: the upload's node dies
// midway, and its chunks, alternating between two replicas, go on at
// another node that knows the session, whose blob reads back whole. The
// probes are slow here: each replica learns of the death from the chunk
// it sends there (a refused connection), and must then ask the other nodes
// as when its probes had found the node down.
func TestHAReplicasSharedUploadOutlivesItsNode(t *testing.T) {
	cfg := haConfig()
	cfg.HealthInterval = time.Hour
	st := stack.Start(t, stack.Options{Nodes: 3, Config: cfg, Fixture: fixtures.Config{SharedUploads: true}})
	a2, d2, _ := replicaOf(t, st, nil, "")
	trs := []http.RoundTripper{viaReplica(st, st.Addr), viaReplica(st, a2)}
	resp, body := do(t, trs[0], http.MethodPost, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s %s", resp.Status, body)
	}
	loc := resp.Header.Get("Location")
	var owner *fixtures.Node // every node knows the session: the one the POST went to
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if rq.Method == http.MethodPost {
				owner = n
			}
		}
	}
	if owner == nil {
		t.Fatal("no node got the POST")
	}
	var blob []byte
	for i := 1; i <= 6; i++ {
		if i == 3 {
			if err := owner.SetKilled(true); err != nil {
				t.Fatal(err)
			}
		}
		if strings.HasPrefix(loc, "/") {
			loc = "https://" + st.Host("team-a") + loc
		}
		chunk := []byte(fmt.Sprintf("chunk %d;", i))
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, loc, strings.NewReader(string(chunk)))
		req.SetBasicAuth(stack.User, stack.Password)
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", len(blob), len(blob)+len(chunk)-1))
		r, err := trs[i%2].RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("PATCH %d via replica %d: %s %s", i, i%2, r.Status, b)
		}
		blob = append(blob, chunk...)
		loc = r.Header.Get("Location")
	}
	dg := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(blob))}
	if strings.HasPrefix(loc, "/") {
		loc = "https://" + st.Host("team-a") + loc
	}
	if r, b := do(t, trs[1], http.MethodPut, loc+"&digest="+url.QueryEscape(dg.String()), nil); r.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s %s", r.Status, b)
	}
	if _, got := do(t, trs[0], http.MethodGet, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/"+dg.String(), nil); got != string(blob) {
		t.Fatalf("the blob reads back as %q, want %q", got, blob)
	}
	if affinity(t, st.Daemon, "asked")+affinity(t, d2, "asked") == 0 {
		t.Error("no follow-up was found by asking")
	}
	moved := map[string]string{"kind": "write", "reason": "connect"}
	if counterValue(t, st.Daemon, "nexmux_upstream_failovers_total", moved)+counterValue(t, d2, "nexmux_upstream_failovers_total", moved) == 0 {
		t.Error("no write failover counted for the chunks that moved")
	}
}

// Replica B ejected the node of an upload opened through replica A (a
// burst of 503s that B alone saw, now over); A did not. The upload's
// chunks through B still go to that node, the only one that holds the
// session, as through A, instead of 404 BLOB_UPLOAD_UNKNOWN for an upload
// its node still holds.
func TestHAReplicaEjectedNodeKeepsItsUploads(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	a2, _, rt2 := replicaOf(t, st, nil, "")
	trs := []http.RoundTripper{viaReplica(st, st.Addr), viaReplica(st, a2)}
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, trs[0], http.MethodPost, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s %s", resp.Status, body)
	}
	loc := resp.Header.Get("Location")
	if strings.HasPrefix(loc, "/") {
		loc = "https://" + st.Host("team-a") + loc
	}
	owner, _ := sessionNode(t, st, loc)
	owner.ResetRequests()
	owner.SetRepositoryUnavailable(true)
	for i := 0; i < 300 && reposOn(owner) < 5; i++ {
		if r, b := do(t, trs[1], http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil); r.StatusCode != http.StatusOK {
			t.Fatalf("manifest GET: %s %s", r.Status, b)
		}
	}
	owner.SetRepositoryUnavailable(false)
	ejected := false
	for _, n := range rt2.Upstreams.Set().Table() {
		if n.Node == owner.Addr() && !n.EjectedUntil.IsZero() {
			ejected = true
		}
	}
	if !ejected {
		t.Fatalf("replica B did not eject %s", owner.Name())
	}
	for i, tr := range []http.RoundTripper{trs[1], trs[0]} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, loc, strings.NewReader("chunk"))
		req.SetBasicAuth(stack.User, stack.Password)
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", 5*i, 5*i+4))
		r, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("PATCH %d (through replica %s): %s %s", i, []string{"B, which ejected the node", "A"}[i], r.Status, b)
		}
		loc = r.Header.Get("Location")
		if strings.HasPrefix(loc, "/") {
			loc = "https://" + st.Host("team-a") + loc
		}
	}
}

// A node comes back after a restart; replica A has seen it up again, replica
// B not yet (its next probe is later: replicas probe on their own clocks).
// An upload opened on that node through A continues through B: B's view of
// the node is older than the tag A handed out, so B asks the tagged node
// too, instead of 404 BLOB_UPLOAD_UNKNOWN for a session its node holds.
func TestHAReplicaBehindOnNodeReturnKeepsItsUploads(t *testing.T) {
	cfg := haConfig()
	cfg.HealthInterval = time.Hour // replica B: sees the node back only by probing, an hour from now
	st := stack.Start(t, stack.Options{Nodes: 2, Config: cfg})
	a2, _, rtA := replicaOf(t, st, func(c *config.Config) { c.HealthInterval = 100 * time.Millisecond }, "")
	trA, trB := viaReplica(st, a2), viaReplica(st, st.Addr)
	node := st.NexusNodes[1]
	state := func(rt *config.Runtime) string {
		for _, n := range rt.Upstreams.Set().Table() {
			if n.Node == node.Addr() {
				return n.State
			}
		}
		return ""
	}
	if err := node.SetDown(true); err != nil {
		t.Fatal(err)
	}
	// Reads through B until one meets the refused connection: down at once.
	haWait(t, "replica B to find the node down", func() bool {
		do(t, trB, http.MethodGet, "https://"+st.Host("team-a")+"/v2/ha/app/tags/list", nil)
		return state(st.Runtime) == "down"
	})
	if err := node.SetDown(false); err != nil {
		t.Fatal(err)
	}
	haWait(t, "replica A to see the node back", func() bool { return state(rtA) == "writable" })
	var loc string
	for i := 0; ; i++ {
		if i == 50 {
			t.Fatal("no upload opened on the returning node in 50 tries")
		}
		resp, body := do(t, trA, http.MethodPost, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/uploads/", nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST via A: %s %s", resp.Status, body)
		}
		loc = resp.Header.Get("Location")
		if strings.HasPrefix(loc, "/") {
			loc = "https://" + st.Host("team-a") + loc
		}
		if n, _ := sessionNode(t, st, loc); n == node {
			break
		}
	}
	if s := state(st.Runtime); s != "down" {
		t.Fatalf("replica B sees the node %s: the premise is gone", s)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, loc, strings.NewReader("chunk"))
	req.SetBasicAuth(stack.User, stack.Password)
	req.Header.Set("Content-Range", "0-4")
	r, err := trB.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH through replica B, which has not seen the node back: %s %s", r.Status, b)
	}
}
