package daemon_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/upstream"
)

// faultAt is a client transport that switches a fault on just before the
// first request match accepts is sent, so the fault meets the push at a
// chosen moment (the fixture has no per-request hook).
type faultAt struct {
	next  http.RoundTripper
	match func(*http.Request) bool
	fire  func(*http.Request)
	once  sync.Once
	fired atomic.Bool
}

func (f *faultAt) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.match(r) {
		f.once.Do(func() { f.fire(r); f.fired.Store(true) })
	}
	return f.next.RoundTrip(r)
}

// uploadOwner is the node that holds the upload session of an upload URL,
// asked directly (nil if none answers).
func uploadOwner(st *stack.Stack, u string) *fixtures.Node {
	i := strings.Index(u, "/blobs/uploads/")
	if i < 0 {
		return nil
	}
	uuid, _, _ := strings.Cut(u[i+len("/blobs/uploads/"):], "?")
	for _, n := range st.NexusNodes {
		req, _ := http.NewRequest(http.MethodGet, n.URL()+"/repository/team-a-hosted/v2/ha/app/blobs/uploads/"+uuid, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return n
		}
	}
	return nil
}

// waitLong polls with a bound generous for a loaded 2-core machine.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A multi-layer push meets a node fault (down, killed, frozen, read-only)
// before the upload starts, between its chunks, at its closing PUT or at
// the manifest PUT. The client either succeeds (after its own retries) or
// gets an error it handles: a 5xx it retries, or 404 BLOB_UPLOAD_UNKNOWN
// only where the session's node is really gone or frozen; never a hang.
// Afterwards every node's in-flight count is back to 0, it never went past
// --upstream-max-conns, and once healed the same push and its pull work.
func TestHAPushUnderNodeFaults(t *testing.T) {
	type fault struct {
		name      string
		on, off   func(*fixtures.Node)
		lost404OK bool // the session's node is gone or frozen: 404 is right
	}
	faults := []fault{
		{"down", func(n *fixtures.Node) { n.SetDown(true) }, func(n *fixtures.Node) { n.SetDown(false) }, true},
		{"kill", func(n *fixtures.Node) { n.SetKilled(true) }, func(n *fixtures.Node) { n.SetKilled(false) }, true},
		{"blackhole", func(n *fixtures.Node) { n.SetBlackhole(true) }, func(n *fixtures.Node) { n.SetBlackhole(false) }, true},
		{"readonly", func(n *fixtures.Node) { n.SetReadOnly(true) }, func(n *fixtures.Node) { n.SetReadOnly(false) }, false},
	}
	moments := []struct {
		name  string
		match func(*http.Request) bool
		// session: the fault hits the node holding the request's upload
		session bool
	}{
		{"before-upload", func(r *http.Request) bool {
			return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/")
		}, false},
		{"between-chunks", func(r *http.Request) bool {
			return r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/blobs/uploads/")
		}, true},
		{"closing-put", func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
		}, true},
		{"manifest-put", func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
		}, false},
	}
	const maxConns = 4
	for _, fl := range faults {
		for _, mo := range moments {
			t.Run(fl.name+"/"+mo.name, func(t *testing.T) {
				cfg := haConfig()
				cfg.UpstreamMaxConns = maxConns
				st := stack.Start(t, stack.Options{Nodes: 3, Config: cfg})
				set := st.Runtime.Upstreams.Set()
				// The largest in-flight count seen at any node.
				peakOf := samplePeak(set)
				var victim atomic.Pointer[fixtures.Node]
				healed := make(chan struct{})
				heal := func() {
					if n := victim.Load(); n != nil {
						fl.off(n)
					}
				}
				// HTTP/1.1: net/http's HTTP/2 client races rewinding a
				// request body it retries after a reset (a client bug).
				fa := &faultAt{next: h1(st), match: mo.match, fire: func(r *http.Request) {
					n := st.NexusNodes[0]
					if mo.session {
						if o := uploadOwner(st, r.URL.String()); o != nil {
							n = o
						}
					}
					victim.Store(n)
					fl.on(n)
					if fl.name == "blackhole" {
						// A frozen node thaws once the probes have it
						// down: the push must not wait on it meanwhile
						// beyond nexmux's own bounds.
						go func() {
							defer close(healed)
							deadline := time.Now().Add(60 * time.Second)
							for time.Now().Before(deadline) {
								down := false
								for _, e := range set.Table() {
									if e.Node == n.Addr() && e.State == "down" {
										down = true
									}
								}
								if down {
									break
								}
								time.Sleep(50 * time.Millisecond)
							}
							time.Sleep(3 * time.Second)
							fl.off(n)
						}()
					}
				}}
				img, err := random.Image(512<<10, 3)
				if err != nil {
					t.Fatal(err)
				}
				ref := st.Host("team-a") + "/ha/app:1"
				ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
				defer cancel()
				errc := make(chan error, 1)
				go func() {
					errc <- haPushCtx(ctx, ref, img, fa)
				}()
				var perr error
				select {
				case perr = <-errc:
				case <-ctx.Done():
					perr = <-errc
					t.Errorf("push hung past 150 s under the fault: %v", perr)
				}
				if !fa.fired.Load() {
					t.Fatalf("the fault never fired (push: %v)", perr)
				}
				if perr != nil {
					var te *transport.Error
					switch {
					case errors.As(perr, &te) && te.StatusCode >= 500:
						// the client retried a 5xx and gave up: handled
					case errors.As(perr, &te) && te.StatusCode == http.StatusNotFound && hasCode(te, "BLOB_UPLOAD_UNKNOWN"):
						if !fl.lost404OK || !mo.session {
							t.Errorf("false 404 BLOB_UPLOAD_UNKNOWN (the session is intact): %v", perr)
						}
					default:
						t.Errorf("push error a client does not handle: %v", perr)
					}
				}
				t.Logf("push: %v", perr)
				if fl.name == "blackhole" {
					<-healed
				} else {
					heal()
				}
				waitLong(t, "every node's in-flight count back to 0", func() bool {
					for _, e := range set.Table() {
						if e.InFlight != 0 {
							return false
						}
					}
					return true
				})
				waitLong(t, "every node writable again", func() bool {
					for _, e := range set.Table() {
						if e.State != "writable" {
							return false
						}
					}
					return true
				})
				if p := peakOf(); p > maxConns {
					t.Errorf("a node had %d requests in flight, over --upstream-max-conns %d", p, maxConns)
				}
				// Healed: the same push completes and its pull verifies.
				if err := haPush(t, ref, img, st.Transport()); err != nil {
					t.Fatalf("push once healed: %v", err)
				}
				want, _ := img.Digest()
				if got, err := pullDigest(t, ref, st.Transport()); err != nil || got != want {
					t.Fatalf("pull once healed: %v %v, want %s", got, err, want)
				}
			})
		}
	}
}

func haPushCtx(ctx context.Context, ref string, img v1.Image, tr http.RoundTripper) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx), remote.WithTransport(tr),
		remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}))
}

func hasCode(te *transport.Error, code string) bool {
	for _, d := range te.Errors {
		if string(d.Code) == code {
			return true
		}
	}
	return false
}

// cutAfter is a client transport whose first blob body calls fire once
// the client has read at bytes of it.
type cutAfter struct {
	next  http.RoundTripper
	at    int64
	fire  func()
	once  sync.Once
	fired atomic.Bool
}

func (c *cutAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") && resp.StatusCode == http.StatusOK {
		resp.Body = &firingBody{ReadCloser: resp.Body, c: c}
	}
	return resp, err
}

type firingBody struct {
	io.ReadCloser
	c    *cutAfter
	read int64
}

func (b *firingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	if b.read >= b.c.at {
		b.c.once.Do(func() { b.c.fire(); b.c.fired.Store(true) })
	}
	return n, err
}

// A pull whose blob body's node goes down, is killed or turns read-only
// mid-download finishes with intact, verified layers (the body resumes on
// another node where it broke), and every node's in-flight count goes
// back to 0 without passing --upstream-max-conns.
func TestHAPullUnderNodeFaults(t *testing.T) {
	const maxConns = 2
	for _, fl := range []struct {
		name    string
		on, off func(*fixtures.Node)
	}{
		{"down", func(n *fixtures.Node) { n.SetDown(true) }, func(n *fixtures.Node) { n.SetDown(false) }},
		{"kill", func(n *fixtures.Node) { n.SetKilled(true) }, func(n *fixtures.Node) { n.SetKilled(false) }},
		{"readonly", func(n *fixtures.Node) { n.SetReadOnly(true) }, func(n *fixtures.Node) { n.SetReadOnly(false) }},
		{"blackhole", func(n *fixtures.Node) { n.SetBlackhole(true) }, func(n *fixtures.Node) { n.SetBlackhole(false) }},
	} {
		t.Run(fl.name, func(t *testing.T) {
			cfg := haConfig()
			cfg.UpstreamMaxConns = maxConns
			st := stack.Start(t, stack.Options{Nodes: 3, Config: cfg})
			set := st.Runtime.Upstreams.Set()
			img, _ := random.Image(2<<20, 3)
			if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
				t.Fatal(err)
			}
			want, _ := img.Digest()
			for _, n := range st.NexusNodes {
				n.SetSlow(0, 1<<20) // a body takes ~2 s: the fault meets it mid-way
			}
			peakOf := samplePeak(set)
			var victims []*fixtures.Node
			ca := &cutAfter{next: h1(st), at: 256 << 10, fire: func() {
				// Layers are read one at a time: the node with a request
				// in flight is the one sending this body.
				for _, e := range set.Table() {
					if e.InFlight == 0 {
						continue
					}
					for _, n := range st.NexusNodes {
						if n.Addr() == e.Node {
							victims = append(victims, n)
							fl.on(n)
						}
					}
				}
			}}
			ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
			defer cancel()
			got, err := pullDigestCtx(ctx, st.Host("team-a")+"/base:1", ca)
			if !ca.fired.Load() {
				t.Fatalf("the fault never fired (pull: %v %v)", got, err)
			}
			if len(victims) != 1 {
				t.Errorf("%d nodes were sending the body, want 1", len(victims))
			}
			if err != nil || got != want {
				t.Errorf("pull under the fault: %v %v, want %s", got, err, want)
			}
			for _, n := range victims {
				fl.off(n)
			}
			waitLong(t, "every node's in-flight count back to 0", func() bool {
				for _, e := range set.Table() {
					if e.InFlight != 0 {
						return false
					}
				}
				return true
			})
			if p := peakOf(); p > maxConns {
				t.Errorf("a node had %d requests in flight, over --upstream-max-conns %d", p, maxConns)
			}
		})
	}
}

func pullDigestCtx(ctx context.Context, ref string, tr http.RoundTripper) (v1.Hash, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithTransport(tr),
		remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}))
	if err != nil {
		return v1.Hash{}, err
	}
	ls, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	// Read every layer: the digests verify as they stream.
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, err
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			return v1.Hash{}, err
		}
		if err := rc.Close(); err != nil {
			return v1.Hash{}, err
		}
	}
	return img.Digest()
}

// samplePeak samples the largest in-flight count at any of set's nodes,
// every 2 ms, until the returned function stops it and returns that count.
func samplePeak(set *upstream.Set) func() int64 {
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, n := range set.Table() {
				if n.InFlight > peak.Load() {
					peak.Store(n.InFlight)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-sampled
		return peak.Load()
	}
}
