package upstream

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Only Nexus's documented read-only answer to status/writable, 503, reads
// as read-only. A 404 is a Nexus (or a front) without the endpoint, and
// another 4xx or a redirect a front that hides it: neither says anything
// against writes, so the node is writable, its status answer showing it
// up. Another 5xx fails the writable question alone: read-only, its
// status answer saying it serves reads.
func TestProbeWritableAnswers(t *testing.T) {
	for _, c := range []struct {
		code int
		want State
	}{
		{http.StatusOK, Writable},
		{http.StatusServiceUnavailable, ReadOnly},
		{http.StatusNotFound, Writable},
		{http.StatusForbidden, Writable},
		{http.StatusFound, Writable},
		{http.StatusInternalServerError, ReadOnly},
		{http.StatusBadGateway, ReadOnly},
		{http.StatusGatewayTimeout, ReadOnly},
	} {
		u := statusServer(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/status/writable") {
				w.WriteHeader(c.code)
			}
		})
		s := mustSet(t, u)
		n := s.Nodes()[0]
		ctx := context.Background()
		p := &prober{ctx: ctx, s: s, interval: time.Hour, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
		for range agree {
			p.round(ctx)
		}
		if st := n.State(); st != c.want {
			t.Errorf("status 200, status/writable %d: state %v, want %v (lastError %q)", c.code, st, c.want, s.Table()[0].LastError)
		}
	}
}
