package l7

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/upstream"
)

const (
	haRepo = "ha-hosted"
	haUser = "admin"
	haPass = "admin123"
)

// haCluster starts the Nexus fixture with count HA nodes and a hosted
// repository that takes Basic credentials directly.
func haCluster(t *testing.T, count int, mods ...func(*fixtures.Config)) (*fixtures.Server, []*fixtures.Node) {
	t.Helper()
	cfg := fixtures.Config{
		Repos:   []fixtures.Repo{{Name: haRepo, Type: fixtures.Hosted, Online: true, ForceBasicAuth: true}},
		Users:   map[string]string{haUser: haPass},
		DataDir: t.TempDir(),
	}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := fixtures.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	nodes, err := s.StartCluster(count)
	if err != nil {
		t.Fatal(err)
	}
	return s, nodes
}

func nodeURLs(nodes []*fixtures.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.URL())
	}
	return out
}

// slowDown makes the set believe n answers in 10 s, so writes (drawn with
// weight 1/cost) go to the other nodes first.
func slowDown(set *upstream.Set, n *fixtures.Node) {
	for i := 0; i < 32; i++ {
		set.ByHost(n.Addr()).ObserveLatency(10 * time.Second)
	}
}

// A streamed body whose first node answers 503 before reading a byte moves
// to the next node; the first attempt's transport writer is still waiting
// for the client's first bytes when that happens. They must reach the
// second node, not the abandoned connection: the blob's digest verifies.
// (Before the attempt-scoped body, the abandoned writer took the first
// bytes and node2 answered 400 DIGEST_INVALID.)
func TestHAStreamedBodyMovesWithoutLosingBytes(t *testing.T) {
	_, nodes := haCluster(t, 2)
	logs := &testnet.Buffer{}
	addr, up := haProxyURLs(t, logs, 0, haRepo, nodeURLs(nodes)...)
	set := up.Set()
	node1, node2 := nodes[0], nodes[1]
	node1.SetRepositoryUnavailable(true)

	moved := 0
	n2 := set.ByHost(node2.Addr())
	for i := 0; i < 3; i++ {
		// The previous round's requests are done: node2's in-flight count
		// below is this upload's.
		waitUntil(t, "node2 idle", func() bool { return n2.InFlight() == 0 })
		slowDown(set, node2)
		blob := make([]byte, 256<<10+i)
		rand.Read(blob)
		sum := sha256.Sum256(blob)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		before := len(node1.Requests())

		pr, pw := io.Pipe()
		req := teamRequest(addr, http.MethodPost, "/v2/app/blobs/uploads/?digest="+digest, pr)
		req.SetBasicAuth(haUser, haPass)
		type result struct {
			resp *http.Response
			err  error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
			res <- result{resp, err}
		}()
		// Hold the body until the request is at node2 (or node2 was the
		// first choice after all, and holds it).
		waitUntil(t, "the upload at node2", func() bool { return n2.InFlight() > 0 })
		if len(node1.Requests()) > before {
			moved++
		}
		go func() {
			for off := 0; off < len(blob); off += 8 << 10 {
				pw.Write(blob[off:min(off+8<<10, len(blob))])
			}
			pw.Close()
		}()
		var r result
		select {
		case r = <-res:
		case <-time.After(30 * time.Second):
			t.Fatalf("no answer to the upload\n%s", logs)
		}
		if r.err != nil {
			t.Fatalf("upload: %v\n%s", r.err, logs)
		}
		b, _ := io.ReadAll(r.resp.Body)
		r.resp.Body.Close()
		if r.resp.StatusCode != http.StatusCreated {
			t.Fatalf("upload %d (moved %d): %s %s\n%s", i, moved, r.resp.Status, b, logs)
		}
		resp, body := sendAuth(t, addr, http.MethodGet, "/v2/app/blobs/"+digest)
		if resp.StatusCode != http.StatusOK || body != string(blob) {
			t.Fatalf("blob %d: %s, %d bytes of %d", i, resp.Status, len(body), len(blob))
		}
	}
	if moved == 0 {
		t.Fatal("node1 was never tried first: nothing moved")
	}
}

func sendAuth(t *testing.T, addr, method, path string) (*http.Response, string) {
	t.Helper()
	req := teamRequest(addr, method, path, nil)
	req.SetBasicAuth(haUser, haPass)
	return sendRequest(t, req)
}

// A client that sends its body only once it has an answer gets the answer
// when every node refuses before reading: the request moves from node1 to
// node2 and node2's 503 comes back, with no client byte read. This is the
// test that hung last session: the fixture's 503 then came from net/http,
// which holds an answer to an unread body until it has discarded up to 256
// KiB of it (unless the answer closes the connection), so node1 waited for
// body bytes nexmux could not give it before the client had an answer.
// Jetty answers at once; the fixture now does too (Connection: close).
func TestHAAnswerWhileBodyHeld(t *testing.T) {
	_, nodes := haCluster(t, 2)
	logs := &testnet.Buffer{}
	addr, _ := haProxyURLs(t, logs, 0, haRepo, nodeURLs(nodes)...)
	for _, n := range nodes {
		n.SetRepositoryUnavailable(true)
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	req := teamRequest(addr, http.MethodPost, "/v2/app/blobs/uploads/?digest=sha256:"+hex.EncodeToString(make([]byte, 32)), pr)
	req.SetBasicAuth(haUser, haPass)
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	res := make(chan *http.Response, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
		}
		res <- resp
	}()
	select {
	case resp := <-res:
		if resp == nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s %s", resp.Status, b)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no answer while the client holds its body\n%s", logs)
	}
}
