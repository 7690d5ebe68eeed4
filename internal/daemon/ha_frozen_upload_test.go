package daemon_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// An upload whose node froze and was found down is lost (4afffcf): its
// follow-ups get 404 BLOB_UPLOAD_UNKNOWN, so the client starts the layer
// over on a node that works. The questions nexmux sends the frozen node
// hold its slots until it answers; once they fill --upstream-max-conns, a
// further follow-up must get the same 404, not a 503 "could not ask every
// node" that the client retries against a node known to be down.
func TestHAFrozenUploadNodeKeepsItsAnswerWhenItsSlotsAreFull(t *testing.T) {
	cfg := haConfig()
	cfg.UpstreamMaxConns = 2
	st := stack.Start(t, stack.Options{Nodes: 3, Config: cfg})
	set := st.Runtime.Upstreams.Set()
	tr := h1(st)
	loc, owner, _ := openUpload(t, st, tr)
	owner.SetBlackhole(true)
	defer owner.SetBlackhole(false)
	state := func() string {
		for _, e := range set.Table() {
			if e.Node == owner.Addr() {
				return e.State
			}
		}
		return ""
	}
	waitLong(t, "the frozen node found down", func() bool { return state() == "down" })
	for i := 0; i < cfg.UpstreamMaxConns+1; i++ {
		resp, body := do(t, tr, http.MethodGet, loc, nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "BLOB_UPLOAD_UNKNOWN") {
			t.Fatalf("follow-up %d while its node is frozen and down: %s %s", i+1, resp.Status, body)
		}
	}
	owner.SetBlackhole(false)
	waitLong(t, "every node's in-flight count back to 0", func() bool {
		for _, e := range set.Table() {
			if e.InFlight != 0 {
				return false
			}
		}
		return true
	})
}
