package l7

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/upstream"
)

// freezingNode is a Nexus stand-in whose upload requests freeze it: a
// PATCH after its first 64 KiB, a PUT once its whole body is read. Frozen,
// it answers nothing more, its probes included (they time out), as a JVM
// stuck or a partitioned node whose kernel still holds the sockets.
type freezingNode struct {
	*haNode
	frozen, readOnly atomic.Bool
}

func startFreezingNode(t *testing.T, release <-chan struct{}) *freezingNode {
	fn := &freezingNode{}
	fn.haNode = startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/service/rest/v1/status") {
			if fn.frozen.Load() {
				<-r.Context().Done()
				return
			}
			if fn.readOnly.Load() && strings.HasSuffix(r.URL.Path, "/writable") {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		if r.Method == http.MethodPatch {
			io.CopyN(io.Discard, r.Body, 64<<10)
		} else {
			io.Copy(io.Discard, r.Body)
		}
		fn.frozen.Store(true)
		select { // frozen: no read, no answer, the connection stays
		case <-release:
		case <-r.Context().Done():
		}
	})
	return fn
}

// An upload follow-up on a node that freezes under it (a PATCH mid-body, a
// closing PUT sent whole) cannot move to another node: the session is on
// that one. Once the probes find the node down, and another node takes
// writes, it is given up at once with a JSON error the client retries
// (docker restarts the layer's upload, on a node that serves). Before, the
// PATCH waited until the node had taken no byte for 120-240 s, the PUT
// for the 300 s header timeout. With no other node taking writes, the
// answer may still come: the request waits, as on a lone node.
func TestUploadOnNodeFoundDownGivenUp(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		body         func() io.Reader
		otherRO      bool // the other node is read-only: nowhere to retry
	}{
		{"PATCH mid-body", http.MethodPatch, func() io.Reader { return io.LimitReader(zeros{}, 1<<40) }, false},
		{"closing PUT sent whole", http.MethodPut, func() io.Reader { return strings.NewReader(strings.Repeat("x", 4<<10)) }, false},
		{"PATCH, no other writable node", http.MethodPatch, func() io.Reader { return io.LimitReader(zeros{}, 1<<40) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			a, b := startFreezingNode(t, release), startFreezingNode(t, release)
			b.readOnly.Store(tc.otherRO)
			addr, up := haProxy(t, io.Discard, 0, a.haNode, b.haNode)
			set := up.Set()
			if tc.otherRO {
				waitUntil(t, "the other node read-only", func() bool { return set.ByHost(b.addr).State() == upstream.ReadOnly })
			}
			node := set.ByHost(a.addr)
			path := "/v2/app/blobs/uploads/u1?_nexmux=" + set.Tag(node, "u1")
			if tc.method == http.MethodPut {
				path += "&digest=sha256%3A" + strings.Repeat("ab", 32)
			}
			req := teamRequest(addr, tc.method, path, tc.body())
			got := sendLater(req)
			waitUntil(t, "the node frozen", a.frozen.Load)
			waitUntil(t, "the frozen node found down", func() bool { return node.State() == upstream.Down })
			if tc.otherRO {
				select {
				case a := <-got:
					t.Fatalf("%s given up with no node to retry on: %v %v", tc.method, a.resp, a.err)
				case <-time.After(time.Second):
				}
				return
			}
			select {
			case a := <-got:
				if a.err != nil {
					t.Fatalf("%s: %v", tc.method, a.err)
				}
				var e struct{ Errors []struct{ Code string } }
				if a.resp.StatusCode != http.StatusBadGateway || json.Unmarshal([]byte(a.body), &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "UNAVAILABLE" ||
					!strings.Contains(a.body, "found down") || a.resp.Header.Get("Retry-After") == "" {
					t.Fatalf("%s on a node found down: %s %s", tc.method, a.resp.Status, a.body)
				}
			case <-time.After(3 * time.Second):
				t.Fatalf("%s on a node found down: no answer 3 s later", tc.method)
			}
		})
	}
}

// freezer relays TCP connections to a node. Frozen, it forwards nothing
// more either way and takes new connections without forwarding them.
type freezer struct {
	target string
	up     atomic.Int64 // bytes forwarded to the node
	after  int64        // freeze once up passes it, if once is still unset
	once   *atomic.Bool // shared: only the first to pass freezes
	frozen atomic.Bool
	done   chan struct{}
	mu     sync.Mutex
	conns  []net.Conn
}

func startFreezer(t *testing.T, target string, after int64, once *atomic.Bool) (*freezer, string) {
	f := &freezer{target: target, after: after, once: once, done: make(chan struct{})}
	ln := testnet.Listen(t)
	t.Cleanup(func() {
		close(f.done)
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.hold(c)
			if f.frozen.Load() {
				continue // accepted, never answered
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.hold(s)
			go f.copy(s, c, true)
			go f.copy(c, s, false)
		}
	}()
	return f, ln.Addr().String()
}

func (f *freezer) hold(c net.Conn) {
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
}

func (f *freezer) copy(dst, src net.Conn, toNode bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && toNode && f.up.Add(int64(n)) > f.after && f.once.CompareAndSwap(false, true) {
			f.frozen.Store(true)
		}
		if f.frozen.Load() {
			<-f.done
			return
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// A real client's push whose upload node freezes mid-layer (accepts TCP,
// never answers, probes included) finishes: the PATCH is given up once the
// node is found down, and go-containerregistry's retry restarts the
// layer's upload on another node. Before, the PATCH waited until the node
// had taken no byte for 120-240 s.
func TestHAPushNodeFrozenMidPush(t *testing.T) {
	_, nodes := haCluster(t, 3)
	var once atomic.Bool
	var urls []string
	for _, n := range nodes {
		// Only an upload's PATCH carries this much to one node.
		_, a := startFreezer(t, n.Addr(), 2<<20, &once)
		urls = append(urls, "http://"+a)
	}
	logs := &testnet.Buffer{}
	addr, _ := haProxyURLs(t, logs, 0, haRepo, urls...)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	auth := []remote.Option{remote.WithAuth(&authn.Basic{Username: haUser, Password: haPass}), remote.WithTransport(tr), remote.WithContext(ctx)}
	ref, err := name.ParseReference("team-a.example.com/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(8<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := remote.Write(ref, img, auth...); err != nil {
		t.Fatalf("push with its upload node frozen: %v after %s\n%s", err, time.Since(start).Round(time.Millisecond), logs)
	}
	if !once.Load() {
		t.Fatal("no node froze: the test froze nothing")
	}
	want, _ := img.Digest()
	pulled, err := remote.Image(ref, auth...)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := pulled.Digest(); got != want {
		t.Fatalf("pulled manifest %s, pushed %s", got, want)
	}
	layers, err := pulled.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed() // verifies the digest at its end
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		if err == nil {
			err = rc.Close()
		}
		if err != nil {
			t.Fatalf("pull of the pushed layer: %v", err)
		}
	}
	t.Logf("push took %s", time.Since(start).Round(time.Millisecond))
}
