package daemon_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// blobNode returns the node whose log holds a GET of the blob.
func blobNode(st *stack.Stack, dig string) *fixtures.Node {
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if rq.Method == http.MethodGet && strings.HasSuffix(rq.Path, "/blobs/"+dig) {
				return n
			}
		}
	}
	return nil
}

// A blob download whose node is killed resumes on the next node; when that
// one has just frozen (accepts, never answers), the probes find it down
// within seconds and the resume moves on to a third node, as a first
// request waiting on a node found down does, instead of waiting the 300 s
// response-header timeout while the client's download stands still.
func TestHABlobResumeLeavesFrozenNode(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	set := st.Runtime.Upstreams.Set()
	img, _ := random.Image(4<<20, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	dig := ld.String()
	url := "https://" + st.Host("team-a") + "/v2/base/blobs/" + dig
	tr := h1(st)
	state := func(n *fixtures.Node) string {
		for _, e := range set.Table() {
			if e.Node == n.Addr() {
				return e.State
			}
		}
		return ""
	}
	// The blob's rendezvous order: first node, then the one after it.
	if resp, _ := do(t, tr, http.MethodGet, url, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s", resp.Status)
	}
	first := blobNode(st, dig)
	for _, n := range st.NexusNodes {
		n.ResetRequests()
	}
	if err := first.SetDown(true); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "the first node down", func() bool { return state(first) == "down" })
	if resp, _ := do(t, tr, http.MethodGet, url, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s", resp.Status)
	}
	second := blobNode(st, dig)
	if err := first.SetDown(false); err != nil {
		t.Fatal(err)
	}
	waitLong(t, "every node writable", func() bool {
		for _, n := range st.NexusNodes {
			if state(n) != "writable" {
				return false
			}
		}
		return true
	})
	if first == nil || second == nil || first == second {
		t.Fatalf("rendezvous order: %v then %v", first, second)
	}
	for _, n := range st.NexusNodes {
		n.SetSlow(0, 1<<20)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := tr.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %v %v", resp, err)
	}
	defer resp.Body.Close()
	head := make([]byte, 256<<10)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	// The next node freezes, then the serving one crashes: the resume
	// goes to the frozen node before the probes know.
	second.SetBlackhole(true)
	if err := first.SetKilled(true); err != nil {
		t.Fatal(err)
	}
	type result struct {
		rest []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(resp.Body)
		done <- result{b, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("download still stands 90 s after its node crashed (its resume waits on the frozen node %s, found %s)", second.Name(), state(second))
	}
	if res.err != nil {
		t.Fatalf("download: %v", res.err)
	}
	if got, _, _ := v1.SHA256(io.MultiReader(bytes.NewReader(head), bytes.NewReader(res.rest))); got != ld {
		t.Fatalf("downloaded blob %s, want %s", got, ld)
	}
	second.SetBlackhole(false)
	first.SetKilled(false)
	waitLong(t, "every node's in-flight count back to 0", func() bool {
		for _, e := range set.Table() {
			if e.InFlight != 0 {
				return false
			}
		}
		return true
	})
}
