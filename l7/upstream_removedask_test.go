package l7

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/upstream"
)

// A reload down to one node leaves the node it removed draining: the
// uploads open there may finish for an hour. A follow-up whose tag is
// missing or fails its check is asked about as with several nodes, the
// removed node included (README: Askable), not sent to the one node
// listed, which never opened the session and answers 404.
func TestReloadToOneNodeAsksTheRemovedNodeForAnUntaggedUpload(t *testing.T) {
	for _, tc := range []struct{ name, tag string }{{"absent", ""}, {"tampered", "AAAAAAAAAAAAAAAAAAAAAAAA"}} {
		t.Run(tc.name, func(t *testing.T) {
			_, nodes := haCluster(t, 2)
			urls := nodeURLs(nodes)
			addr, up := haProxyURLs(t, io.Discard, 0, haRepo, urls...)
			u, tagged := openUpload(t, addr, up)
			var kept string
			for i, n := range nodes {
				if n.Addr() != tagged.Host {
					kept = urls[i]
				}
			}
			spec, err := upstream.ParseSpec([]string{kept}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := up.Set().Update(spec); err != nil {
				t.Fatal(err)
			}
			// The tagged follow-up still reaches the removed node.
			if resp, body := sendAuth(t, addr, http.MethodGet, u.RequestURI()); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("tagged upload status after the reload: %s %s", resp.Status, body)
			}
			p := u.Path
			if tc.tag != "" {
				p += "?" + upstream.TagParam + "=" + tc.tag
			}
			if resp, body := sendAuth(t, addr, http.MethodGet, p); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("upload status with its tag %s, on the removed node that holds it: %s %s", tc.name, resp.Status, body)
			}
		})
	}
}

// A reload down to the node an upload is tagged for leaves the node it
// removed draining, and where Nexus shares upload sessions that node knows
// the upload too. When the tagged node then refuses the follow-up's
// connection before the probes find it down, the removed node is asked, as
// it is for an untagged follow-up, rather than the chunk getting 503 as if
// the one node listed were all of Nexus.
func TestReloadToTaggedNodeRefusingAsksTheRemovedNode(t *testing.T) {
	_, nodes := haCluster(t, 2, func(c *fixtures.Config) { c.SharedUploads = true })
	// The follow-up must meet a refused dial (closedTo).
	tr, closedTo := trackingTransport(t)
	// Probes at the start and when the reload kicks them only: the
	// refused connection, not a probe, is what finds the node gone.
	addr, up := haProxyProbing(t, io.Discard, 0, haRepo, Config{Transport: tr}, time.Hour, nodeURLs(nodes)...)
	// Both questions of a probe: one still to come when the node closes
	// would find it down first.
	probedAll := func() bool {
		for _, n := range nodes {
			for _, q := range []string{"/status", "/status/writable"} {
				if !slices.ContainsFunc(n.Requests(), func(r fixtures.Request) bool { return strings.HasSuffix(r.Path, q) }) {
					return false
				}
			}
		}
		return true
	}
	waitUntil(t, "the first probe round", probedAll)
	time.Sleep(100 * time.Millisecond) // the probes' answers read
	u, tagged := openUpload(t, addr, up)
	kept := nodeAt(nodes, tagged.Host)
	for _, n := range nodes {
		n.ResetRequests()
	}
	spec, err := upstream.ParseSpec([]string{kept.URL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Set().Update(spec); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the probe round the reload kicks", probedAll)
	time.Sleep(100 * time.Millisecond) // the probes' answers read
	if err := kept.SetDown(true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "nexmux's connections to the node closed", closedTo(kept.Addr()))
	if resp, body := sendChunk(t, addr, u.RequestURI()); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH tagged for the one node left, which refuses connections, with the removed node sharing the session: %s %s, want 202 from the removed node", resp.Status, body)
	}
}

// trackingTransport is NewTransport, its connections tracked: closedTo(addr)
// says when every one dialled to addr is closed. A node that goes down
// closes its connections, but a kept-alive one the transport has not yet
// seen closed would carry the next request, which then breaks instead of
// meeting a refused dial (and a PATCH is not sent again).
func trackingTransport(t *testing.T) (*http.Transport, func(addr string) func() bool) {
	var mu sync.Mutex
	conns := map[string][]*closeFlagConn{}
	tr := NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := dial(ctx, network, a)
		if err != nil {
			return nil, err
		}
		fc := &closeFlagConn{Conn: c}
		mu.Lock()
		conns[a] = append(conns[a], fc)
		mu.Unlock()
		return fc, nil
	}
	return tr, func(addr string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns[addr] {
				if !c.closed.Load() {
					return false
				}
			}
			return true
		}
	}
}

// closeFlagConn records that its connection was closed.
type closeFlagConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *closeFlagConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}
