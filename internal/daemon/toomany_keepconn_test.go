package daemon_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A client at --max-requests-per-client (its requests held by a Nexus
// that is slow or frozen, as in an outage) retries its refused requests
// as the 429's Retry-After says. A 429 is no request nothing could serve,
// which is what the close after three refusals in a row is for: the
// client keeps its connection, over HTTP/1 and HTTP/2, instead of paying
// a TLS handshake every third retry while nexmux is already loaded.
func TestTooManyRequestsKeepsTheConnection(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxRequestsPerClient = 1
	st := stack.Start(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]
	node.SetBlackhole(true)
	defer node.SetBlackhole(false)
	url := "https://" + st.Host("team-a") + "/v2/app/manifests/1"

	held := &http.Client{Transport: transportFrom(st, "127.0.0.1")}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		if resp, err := held.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the held request at Nexus", func() bool { return len(node.Requests()) == 1 })

	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			c, dials := countingClient(t, transportFrom(st, "127.0.0.1"), proto)
			for i := range 6 {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.SetBasicAuth(stack.User, stack.Password)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusTooManyRequests || resp.Proto != proto {
					t.Fatalf("request %d while the client's slot is held: %s %s %s", i, resp.Proto, resp.Status, body)
				}
			}
			if got := dials.Load(); got != 1 {
				t.Fatalf("6 requests refused 429 (Retry-After) took %d connections, want 1 (kept for the retries)", got)
			}
		})
	}
}
