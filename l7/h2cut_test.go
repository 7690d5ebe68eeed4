package l7

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Over HTTP/2 with per-client limits on, a response Nexus breaks off ends
// in ReverseProxy's ErrAbortHandler, taken by serve for the access line
// and passed on: the request is recorded once, with the reason, and its
// per-client place (held until delivery over HTTP/2) comes back, so the
// client's next requests (a limit of one) are not refused 429.
func TestH2NexusCutRecordedOnceAndPlaceBack(t *testing.T) {
	n := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/manifests/cut") {
			io.WriteString(w, "{}")
			return
		}
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
	})
	var mu sync.Mutex
	var recs []Record
	addr, _ := haProxyConfig(t, io.Discard, 0, "team-a", Config{MaxRequestsPerClient: 1, Observe: func(_ *ConnInfo, _ *http.Request, rec Record) {
		mu.Lock()
		recs = append(recs, rec)
		mu.Unlock()
	}}, "http://"+n.addr)
	tr := h2cTransport(t, nil)
	get := func(path string) (int, error) {
		resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, path, nil))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return resp.StatusCode, err
	}
	for i := 0; i < 3; i++ {
		if _, err := get("/v2/app/manifests/cut"); err == nil {
			t.Fatal("whole body from a Nexus that broke it off")
		}
		// The records are written before the stream's reset reaches the
		// client: every one is in before the next request.
		waitUntil(t, "the cut request's record", func() bool { mu.Lock(); defer mu.Unlock(); return len(recs) == 2*i+1 })
		if code, err := get("/v2/app/manifests/ok"); err != nil || code != http.StatusOK {
			t.Fatalf("request after cut %d: %d %v", i, code, err)
		}
		waitUntil(t, "the next request's record", func() bool { mu.Lock(); defer mu.Unlock(); return len(recs) == 2*i+2 })
	}
	mu.Lock()
	defer mu.Unlock()
	if len(recs) != 6 {
		t.Fatalf("%d records for 6 requests", len(recs))
	}
	for i, r := range recs {
		if i%2 == 0 && (r.Status != http.StatusOK || r.Reason != "response cut: Nexus's response broke off") {
			t.Errorf("cut request %d: %d %q", i/2, r.Status, r.Reason)
		}
		if i%2 == 1 && (r.Status != http.StatusOK || r.Reason != "") {
			t.Errorf("request after cut %d: %d %q", i/2, r.Status, r.Reason)
		}
	}
}
