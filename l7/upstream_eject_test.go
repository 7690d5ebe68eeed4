package l7

import (
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/upstream"
)

func ejected(set *upstream.Set) []string {
	var out []string
	for _, n := range set.Table() {
		if !n.EjectedUntil.IsZero() {
			out = append(out, n.Node)
		}
	}
	return out
}

// ejectWith sends try's i-th request until a node is ejected, 200 at most,
// and fails unless want alone is.
func ejectWith(t *testing.T, up *Upstreams, want string, try func(i int)) {
	t.Helper()
	for i := 0; i < 200 && len(ejected(up.Set())) == 0; i++ {
		try(i)
	}
	if e := ejected(up.Set()); len(e) != 1 || e[0] != want {
		t.Fatalf("ejected %v, want %s alone", e, want)
	}
}

// mirrorCluster is two HA nodes holding a seeded mirror repository m, a
// Proxy at addr in front of them, and the path of m's manifest.
func mirrorCluster(t *testing.T) (*fixtures.Server, []*fixtures.Node, fixtures.Mirror, string, *Upstreams, string) {
	t.Helper()
	s, nodes := haCluster(t, 2, func(c *fixtures.Config) { c.Repos = append(c.Repos, fixtures.MirrorRepos("")...) })
	if err := s.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	m := fixtures.Mirrors[0]
	i := strings.LastIndex(m.Image, ":")
	addr, up := haProxyURLs(t, io.Discard, 0, m.Repo, nodeURLs(nodes)...)
	return s, nodes, m, addr, up, "/v2/" + m.Image[:i] + "/manifests/" + m.Image[i+1:]
}

// A 5xx that every node gives for the same request is the repository's
// (a proxy repository whose remote is gone, an offline repository), not a
// node's: 20 reads of a mirror repository answered 503 by both nodes eject
// neither. A 503 of one node while the other answers still ejects it.
func TestHARepository5xxOnEveryNodeEjectsNone(t *testing.T) {
	s, nodes, m, addr, up, path := mirrorCluster(t)
	if resp, body := sendAuth(t, addr, http.MethodGet, path); resp.StatusCode != http.StatusOK {
		t.Fatalf("mirror manifest: %s %s", resp.Status, body)
	}

	s.SetOnline(m.Repo, false) // every node: 503
	for range 20 {
		if resp, body := sendAuth(t, addr, http.MethodGet, path); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("offline mirror: %s %s", resp.Status, body)
		}
	}
	if e := ejected(up.Set()); len(e) != 0 {
		t.Fatalf("a 503 every node gives ejected %v", e)
	}

	s.SetOnline(m.Repo, true)
	nodes[0].SetRepositoryUnavailable(true)
	ejectWith(t, up, nodes[0].Addr(), func(int) {
		if resp, body := sendAuth(t, addr, http.MethodGet, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("with node1 failing: %s %s", resp.Status, body)
		}
	})
}

// With the other node down, the one node left is every node a request can
// try: an offline repository's 503s from it are the repository's, as when
// both nodes answer them. Ejecting it for them turned one repository's
// outage into every repository's ("no Nexus node is reachable").
func TestHARepository5xxOnTheLastNodeEjectsNone(t *testing.T) {
	s, nodes, m, addr, up, path := mirrorCluster(t)
	if err := nodes[1].SetDown(true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "node2 found down", func() bool { return up.Set().ByHost(nodes[1].Addr()).State() == upstream.Down })

	s.SetOnline(m.Repo, false)
	for range 20 {
		if resp, body := sendAuth(t, addr, http.MethodGet, path); resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "nexmux") {
			t.Fatalf("offline repository: %s %s", resp.Status, body)
		}
	}
	if e := ejected(up.Set()); len(e) != 0 {
		t.Fatalf("a repository's 503 on the last node ejected %v", e)
	}
	s.SetOnline(m.Repo, true)
	if resp, body := sendAuth(t, addr, http.MethodGet, path); resp.StatusCode != http.StatusOK {
		t.Fatalf("back online: %s %s", resp.Status, body)
	}
}

// An upload follow-up can only go to its own node: while other nodes
// serve, that node's 503s to it still count toward its ejection (only the
// last readable node is spared).
func TestHAUploadNode5xxStillEjects(t *testing.T) {
	_, nodes := haCluster(t, 2)
	addr, up := haProxyURLs(t, io.Discard, 0, haRepo, nodeURLs(nodes)...)
	u, tagged := openUpload(t, addr, up)
	opened := nodeAt(nodes, tagged.Host)
	ejectUploadNode(t, addr, up, u, opened)
}

// A chunk of an upload whose node is drained (--drain-upstream) but still
// takes writes goes on there, though every other node is read-only: the
// early refusal is for an upload whose own node is frozen.
func TestHADrainedWritableNodeFinishesUpload(t *testing.T) {
	_, nodes := haCluster(t, 2)
	urls := nodeURLs(nodes)
	addr, up := haProxyURLs(t, io.Discard, 0, haRepo, urls...)
	u, tagged := openUpload(t, addr, up)
	var drained string
	for i, n := range nodes {
		if n.Addr() == tagged.Host {
			drained = urls[i]
		} else {
			n.SetReadOnly(true)
			waitUntil(t, "the other node read-only", func() bool { return up.Set().ByHost(n.Addr()).State() == upstream.ReadOnly })
		}
	}
	spec, err := upstream.ParseSpec(urls, []string{drained})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Set().Update(spec); err != nil {
		t.Fatal(err)
	}
	if resp, body := sendChunk(t, addr, u.RequestURI()); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH on the drained, writable node: %s %s", resp.Status, body)
	}
}

// With one writable node and another read-only, the writable one is the
// last that takes writes: an offline hosted repository's 503s to its
// uploads do not eject it (every push to every repository would then get
// "Nexus accepts no writes").
func TestHAOfflineRepositorySparesTheLastWritableNode(t *testing.T) {
	s, nodes := haCluster(t, 2)
	addr, up := haProxyURLs(t, io.Discard, 0, haRepo, nodeURLs(nodes)...)
	nodes[1].SetReadOnly(true)
	waitUntil(t, "node2 read-only", func() bool { return up.Set().ByHost(nodes[1].Addr()).State() == upstream.ReadOnly })
	s.SetOnline(haRepo, false)
	for range 8 {
		if resp, body := sendAuth(t, addr, http.MethodPost, "/v2/app/blobs/uploads/"); resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "nexmux") {
			t.Fatalf("offline repository: %s %s", resp.Status, body)
		}
	}
	if e := ejected(up.Set()); len(e) != 0 {
		t.Fatalf("an offline repository's 503s ejected %v", e)
	}
	s.SetOnline(haRepo, true)
	if resp, body := sendAuth(t, addr, http.MethodPost, "/v2/app/blobs/uploads/"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("back online: %s %s", resp.Status, body)
	}
}

// A node the probes know is read-only answers every write with 503: that
// is its mode, not a failure. Chunks of an upload it opened must not eject
// it: ejected, it served no reads for 10 s or more, and its open uploads
// got 404 BLOB_UPLOAD_UNKNOWN though it still held them.
func TestHAReadOnlyNodeRefusingWritesIsNotEjected(t *testing.T) {
	readOnlyUploadRefusals(t, http.StatusAccepted, func(addr string, u *url.URL) *http.Request {
		return teamRequest(addr, http.MethodPatch, u.RequestURI(), strings.NewReader("chunk"))
	})
}

// The same for the closing PUT without a body (docker's, after its PATCH):
// no body made it a read, and its 503s ejected the read-only node.
func TestHAReadOnlyNodeRefusingBodilessPutIsNotEjected(t *testing.T) {
	// Once writable the node holds the session: the wrong digest is its
	// answer, not BLOB_UPLOAD_UNKNOWN.
	readOnlyUploadRefusals(t, http.StatusBadRequest, func(addr string, u *url.URL) *http.Request {
		q := u.Query()
		q.Set("digest", "sha256:"+strings.Repeat("0", 64))
		return teamRequest(addr, http.MethodPut, u.Path+"?"+q.Encode(), nil)
	})
}

// readOnlyUploadRefusals opens an upload, makes its node read-only, sends
// req's follow-up to it more often than ejects, and checks the node is not
// ejected and answers the follow-up with again once writable.
func readOnlyUploadRefusals(t *testing.T, again int, req func(addr string, u *url.URL) *http.Request) {
	_, nodes := haCluster(t, 3)
	addr, up := haProxyURLs(t, io.Discard, 0, haRepo, nodeURLs(nodes)...)
	u, tagged := openUpload(t, addr, up)
	opened := nodeAt(nodes, tagged.Host)
	opened.SetReadOnly(true)
	waitUntil(t, "the upload's node read-only", func() bool { return up.Set().ByHost(opened.Addr()).State() == upstream.ReadOnly })
	send := func() (*http.Response, string) {
		r := req(addr, u)
		r.SetBasicAuth(haUser, haPass)
		return sendRequest(t, r)
	}
	for i := range 8 { // more than the 5 in a row that eject
		if resp, body := send(); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "read-only") {
			t.Fatalf("request %d to the read-only node: %s %s", i, resp.Status, body)
		}
	}
	if e := ejected(up.Set()); len(e) != 0 {
		t.Fatalf("a read-only node's refusals of writes ejected %v", e)
	}
	opened.SetReadOnly(false)
	waitUntil(t, "the upload's node writable", func() bool { return up.Set().ByHost(opened.Addr()).State() == upstream.Writable })
	if resp, body := send(); resp.StatusCode != again {
		t.Fatalf("once the node takes writes again: %s %s", resp.Status, body)
	}
}

// openUpload starts an upload through nexmux at addr and returns its
// Location and the node its tag names.
func openUpload(t *testing.T, addr string, up *Upstreams) (*url.URL, *upstream.Node) {
	t.Helper()
	u := startUpload(t, addr)
	tagged, err := up.Set().Untag(u.Query().Get("_nexmux"), path.Base(u.Path))
	if err != nil {
		t.Fatalf("upload Location %s: %v", u, err)
	}
	return u, tagged
}

// startUpload starts an upload through nexmux at addr and returns its
// Location.
func startUpload(t *testing.T, addr string) *url.URL {
	t.Helper()
	resp, body := sendAuth(t, addr, http.MethodPost, "/v2/app/blobs/uploads/")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s %s", resp.Status, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// nodeAt is the fixture node listening on host.
func nodeAt(nodes []*fixtures.Node, host string) *fixtures.Node {
	for _, n := range nodes {
		if n.Addr() == host {
			return n
		}
	}
	return nil
}

// An ejected node keeps its uploads' chunks (no other node may hold them,
// and the ejection is one replica's view), but where Nexus shares upload
// sessions another node that knows the session takes them while the
// ejected one keeps failing: the chunk is not sent into the 503s that
// ejected it for the whole ejection.
func TestHAEjectedUploadNodeHandsSharedSessionOn(t *testing.T) {
	_, addr, _, u, _, other := ejectedSharedUpload(t)
	other.ResetRequests()
	if resp, body := sendChunk(t, addr, u.RequestURI()); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH with its node ejected and the session shared: %s %s, want 202 from the other node", resp.Status, body)
	}
	if got, _ := patched(other); !got {
		t.Error("the other node, which knows the session, got no PATCH")
	}
}

// ejectUploadNode makes the node of the upload at u fail its repository and
// sends the upload's chunk until the node is ejected (5 in a row).
func ejectUploadNode(t *testing.T, addr string, up *Upstreams, u *url.URL, opened *fixtures.Node) {
	t.Helper()
	opened.SetRepositoryUnavailable(true)
	for range 5 {
		if resp, body := sendChunk(t, addr, u.RequestURI()); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("PATCH to the failing node: %s %s", resp.Status, body)
		}
	}
	if e := ejected(up.Set()); len(e) != 1 || e[0] != opened.Addr() {
		t.Fatalf("ejected %v, want the upload's node %s", e, opened.Addr())
	}
}

// otherNode is the one of two nodes that is not n.
func otherNode(nodes []*fixtures.Node, n *fixtures.Node) *fixtures.Node {
	if nodes[0] == n {
		return nodes[1]
	}
	return nodes[0]
}

// A chunk whose node is ejected moves only to a node that would take it:
// with sessions shared, a read-only node knows the session too, but
// refuses the write. Moved there, the chunk got "Nexus accepts no writes"
// though its own node takes writes again (its ejection not yet over).
func TestHAEjectedUploadNodeKeepsWriteFromReadOnlyNode(t *testing.T) {
	_, addr, up, u, opened, other := ejectedSharedUpload(t)
	opened.SetRepositoryUnavailable(false)
	other.SetReadOnly(true)
	waitUntil(t, "the other node read-only", func() bool { return up.Set().ByHost(other.Addr()).State() == upstream.ReadOnly })
	if e := ejected(up.Set()); len(e) != 1 {
		t.Fatalf("ejected %v: the ejection ended before the chunk", e)
	}
	if resp, body := sendChunk(t, addr, u.RequestURI()); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH with its writable node ejected, the other read-only: %s %s, want 202 from its own node", resp.Status, body)
	}
}

// Nor does it move to a drained node (--drain-upstream), which the
// operator is emptying: the chunk and the Location's tag stay on the
// upload's own node.
func TestHAEjectedUploadNodeKeepsChunkFromDrainedNode(t *testing.T) {
	nodes, addr, up, u, opened, other := ejectedSharedUpload(t)
	urls := nodeURLs(nodes)
	opened.SetRepositoryUnavailable(false)
	drained := urls[0]
	if nodes[0] != other {
		drained = urls[1]
	}
	spec, err := upstream.ParseSpec(urls, []string{drained})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Set().Update(spec); err != nil {
		t.Fatal(err)
	}
	other.ResetRequests()
	resp, body := sendChunk(t, addr, u.RequestURI())
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH with its node ejected, the other drained: %s %s", resp.Status, body)
	}
	if got, _ := patched(other); got {
		t.Fatal("the chunk went to the drained node")
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := up.Set().Untag(loc.Query().Get("_nexmux"), path.Base(loc.Path)); err != nil || n.Host != opened.Addr() {
		t.Fatalf("Location %s names %v (%v), want the upload's own node", loc, n, err)
	}
}

// The same for a status GET of the upload: the node that answers it gets
// the upload's tag, so the read-only node that knows the session must not
// answer it either, or the chunk that follows its Location goes there and
// gets "Nexus accepts no writes" as above.
func TestHAEjectedUploadNodeKeepsTagFromReadOnlyNode(t *testing.T) {
	_, addr, up, u, opened, other := ejectedSharedUpload(t)
	opened.SetRepositoryUnavailable(false)
	other.SetReadOnly(true)
	waitUntil(t, "the other node read-only", func() bool { return up.Set().ByHost(other.Addr()).State() == upstream.ReadOnly })
	req := teamRequest(addr, http.MethodGet, u.RequestURI(), nil)
	req.SetBasicAuth(haUser, haPass)
	resp, body := sendRequest(t, req)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("upload status GET: %s %s", resp.Status, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if e := ejected(up.Set()); len(e) != 1 {
		t.Fatalf("ejected %v: the ejection ended before the chunk", e)
	}
	if resp, body := sendChunk(t, addr, loc.RequestURI()); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH to the status GET's Location: %s %s, want 202 from the upload's own node", resp.Status, body)
	}
}

// ejectedSharedUpload opens an upload through a proxy in front of two
// nodes sharing upload sessions and ejects the upload's node (opened) for
// its repository's 503s, which it keeps answering.
func ejectedSharedUpload(t *testing.T) (nodes []*fixtures.Node, addr string, up *Upstreams, u *url.URL, opened, other *fixtures.Node) {
	t.Helper()
	_, nodes = haCluster(t, 2, func(c *fixtures.Config) { c.SharedUploads = true })
	addr, up = haProxyURLs(t, io.Discard, 0, haRepo, nodeURLs(nodes)...)
	u, tagged := openUpload(t, addr, up)
	opened = nodeAt(nodes, tagged.Host)
	other = otherNode(nodes, opened)
	ejectUploadNode(t, addr, up, u, opened)
	return nodes, addr, up, u, opened, other
}

// patched reports whether n got a PATCH since its requests were last
// reset, and the status it answered.
func patched(n *fixtures.Node) (bool, int) {
	for _, rq := range n.Requests() {
		if rq.Method == http.MethodPatch {
			return true, rq.Status
		}
	}
	return false, 0
}

// sendChunk sends a "chunk" PATCH of the upload at uri with the HA
// repository's credentials, and returns the answer and its body.
func sendChunk(t *testing.T, addr, uri string) (*http.Response, string) {
	t.Helper()
	req := teamRequest(addr, http.MethodPatch, uri, strings.NewReader("chunk"))
	req.SetBasicAuth(haUser, haPass)
	return sendRequest(t, req)
}

// A node ejected for its 503s that has recovered is still a node that
// serves: when the only node left in rotation answers 503, the read moves
// on to it rather than every client getting the 503 until the ejection
// ends (10 s, doubling up to 160 s for a node ejected again), as Pick
// falls back on it when no other node serves at all. Found from the
// outside: two fixture nodes, node1 ejected by repositoryUnavailable and
// then cleared, node2 set to it: every manifest GET got 503 for the rest
// of node1's ejection.
func TestHARead503MovesOnToAnEjectedNode(t *testing.T) {
	_, nodes, _, addr, up, path := mirrorCluster(t)
	nodes[0].SetRepositoryUnavailable(true)
	ejectWith(t, up, nodes[0].Addr(), func(int) {
		if resp, body := sendAuth(t, addr, http.MethodGet, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("with node1 failing: %s %s", resp.Status, body)
		}
	})
	nodes[0].SetRepositoryUnavailable(false)
	nodes[1].SetRepositoryUnavailable(true)
	if resp, body := sendAuth(t, addr, http.MethodGet, path); resp.StatusCode != http.StatusOK {
		t.Fatalf("node2 answering 503, node1 ejected but serving: %s %s", resp.Status, body)
	}
}
