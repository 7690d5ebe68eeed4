package l7

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// A response whose body Nexus breaks off (its connection closed before the
// Content-Length is in, no other node to resume from) is logged with a
// reason naming Nexus: before, its access line read as a whole 200.
func TestNexusCutResponseHasAReason(t *testing.T) {
	n := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		w.Header().Set("Content-Length", "100000")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	var mu sync.Mutex
	var recs []Record
	addr, _ := haProxyConfig(t, io.Discard, 0, "team-a", Config{Observe: func(_ *ConnInfo, _ *http.Request, rec Record) {
		mu.Lock()
		recs = append(recs, rec)
		mu.Unlock()
	}}, "http://"+n.addr)
	for _, path := range []string{
		"/v2/app/blobs/sha256:" + strings.Repeat("ab", 32),
		"/v2/app/manifests/1",
	} {
		resp, err := sendRaw(addr, path)
		if err == nil {
			t.Fatalf("GET %s: whole body (%d bytes) from a Nexus that broke it off", path, resp)
		}
	}
	waitUntil(t, "two access records", func() bool { mu.Lock(); defer mu.Unlock(); return len(recs) == 2 })
	for _, rec := range recs {
		if !strings.Contains(rec.Reason, "response cut") || !strings.Contains(rec.Reason, "Nexus") {
			t.Errorf("status %d, %d bytes out: reason %q, want one naming the cut at Nexus", rec.Status, rec.BytesOut, rec.Reason)
		}
	}
}

// sendRaw GETs path as team-a and reads the whole body: its length, or the
// error that cut it.
func sendRaw(addr, path string) (int, error) {
	resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(teamRequest(addr, http.MethodGet, path, nil))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return len(b), err
}
