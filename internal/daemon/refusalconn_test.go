package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// With every Nexus node down, a request nexmux refuses itself (503
// UNAVAILABLE) leaves the client's connection open when nothing of the
// request is left unread: a client retrying through an outage (docker over
// HTTP/1, containerd over HTTP/2) goes on over its connection instead of
// paying a TLS handshake per retry, which every client of every replica
// would do at once. A refused request whose body is left unread still ends
// its HTTP/1 connection (closing beats draining a large upload); over
// HTTP/2 only its stream ends.
func TestRefusalKeepsTheConnectionWhenNothingIsUnread(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	for _, n := range st.NexusNodes {
		if err := n.SetDown(true); err != nil {
			t.Fatal(err)
		}
	}
	base := "https://" + st.Host("team-a")
	get := func(c *http.Client) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(base + "/v2/app/manifests/latest")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			c, dials := countingClient(t, st.Transport(), proto)
			haWait(t, "every node found down", func() bool {
				resp, _ := get(c)
				return resp.StatusCode == http.StatusServiceUnavailable
			})
			before := dials.Load()
			for range 3 {
				resp, body := get(c)
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"UNAVAILABLE"`) || resp.Proto != proto {
					t.Fatalf("GET with every node down: %s %s %s", resp.Proto, resp.Status, body)
				}
			}
			if got := dials.Load() - before; got != 0 {
				t.Fatalf("3 bodiless requests refused with every node down took %d new connection(s), want none (the first one kept)", got)
			}
			// A monolithic upload's body, left unread by the refusal.
			body := bytes.Repeat([]byte("x"), 4<<20)
			resp, err := c.Post(base+"/v2/app/blobs/uploads/?digest=sha256:"+strings.Repeat("0", 64), "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("POST with a body, every node down: %s", resp.Status)
			}
			before = dials.Load()
			get(c)
			switch got := dials.Load() - before; {
			case proto == "HTTP/1.1" && got != 1:
				t.Fatalf("after a refused upload whose body was left unread, the next request took %d new connection(s), want 1 (the connection ends)", got)
			case proto == "HTTP/2.0" && got != 0:
				t.Fatalf("after a refused upload over HTTP/2, the next request took %d new connection(s), want none (only the stream ends)", got)
			}
		})
	}
}

// countingClient is a client over tr speaking proto ("HTTP/1.1" or
// "HTTP/2.0"), and the count of the connections it dials.
func countingClient(t *testing.T, tr *http.Transport, proto string) (*http.Client, *atomic.Int32) {
	dials := new(atomic.Int32)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	tr.ForceAttemptHTTP2 = proto == "HTTP/2.0"
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, dials
}
