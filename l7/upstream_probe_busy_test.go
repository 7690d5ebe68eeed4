package l7

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// A probe that times out while the node answers real requests is set
// aside (busy, not down), but only an answer that shows the node serving
// counts: a wedged Nexus still answers a docker client's 401 challenge, or
// 500 for what it cannot do, while its status check and real pulls hang.
// Counted, those would keep it writable and its traffic on it for good.
func TestProbeTimeoutWhileNodeAnswersErrorsIsBelieved(t *testing.T) {
	for _, code := range []int{http.StatusUnauthorized, http.StatusInternalServerError} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			var bad atomic.Pointer[string] // the wedged node's address
			var wedged atomic.Bool
			h := func(w http.ResponseWriter, r *http.Request) {
				local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
				isBad := wedged.Load() && bad.Load() != nil && *bad.Load() == local
				switch {
				case strings.Contains(r.URL.Path, "/service/rest/v1/status"):
					if isBad {
						<-r.Context().Done() // the probe times out
					}
				case isBad:
					w.WriteHeader(code)
				}
			}
			a, b := startNode(t, h), startNode(t, h)
			addr, up := haProxy(t, io.Discard, 0, a, b)
			digest := "sha256:" + strings.Repeat("ab", 32)
			ns, err := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest)
			if err != nil {
				t.Fatal(err)
			}
			n := ns[0]
			waitUntil(t, "both nodes writable", func() bool {
				for _, n := range up.Set().Nodes() {
					if n.State() != upstream.Writable {
						return false
					}
				}
				return true
			})
			bad.Store(&n.Host)
			wedged.Store(true)
			// Reads by digest go to n while it is up, answered code at once.
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					req := teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil)
					if resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
			defer func() { close(stop); <-done }()
			waitUntil(t, "the wedged node answering "+http.StatusText(code)+" found down", func() bool { return n.State() == upstream.Down })
		})
	}
}
