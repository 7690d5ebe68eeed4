package daemon_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A question nexmux asks a node (which one holds this upload session?) is
// a request in flight to that node, as a resume is: it takes one of the
// node's --upstream-max-conns slots, and nexmux_upstream_in_flight{node}
// shows it while the node has it, then goes back to 0.
func TestHAUploadQuestionShowsInFlight(t *testing.T) {
	cfg := haConfig()
	cfg.HealthInterval = time.Hour // a blackholed node stays asked
	cfg.MetricsListen = "127.0.0.1:0"
	st := stack.Start(t, stack.Options{Nodes: 2, Config: cfg})
	maddr := st.Daemon.Addr("metrics").String()
	tr := h1(st)
	inFlight := func(node string) float64 {
		return metric(metricsText(t, maddr), "nexmux_upstream_in_flight", map[string]string{"node": node})
	}
	// Retried while inconclusive: the question ends at its own timeout
	// (2 s), and a scrape that came after that saw nothing either way.
	for try := 0; ; try++ {
		loc, owner, uuid := openUpload(t, st, tr)
		untagged, _, _ := strings.Cut(loc, "?") // tag absent: the nodes are asked
		owner.ResetRequests()
		owner.SetBlackhole(true)
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, untagged, nil)
			req.SetBasicAuth(stack.User, stack.Password)
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		}()
		waitFor(t, "the question to reach the session's node", func() bool {
			for _, rq := range owner.Requests() {
				if rq.Method == http.MethodGet && strings.HasSuffix(rq.Path, uuid) {
					return true
				}
			}
			return false
		})
		got := inFlight(owner.Addr())
		select {
		case <-done:
			owner.SetBlackhole(false)
			if try < 3 {
				continue
			}
			t.Fatal("the question always ended before the scrape")
		default:
		}
		if got != 1 {
			t.Errorf("nexmux_upstream_in_flight{node=%q} = %v while nexmux's question waits there, want 1", owner.Addr(), got)
		}
		<-done
		// The question outlives the follow-up's wait: it holds its slot
		// until the node lets it go, here as the blackhole ends.
		owner.SetBlackhole(false)
		for _, n := range st.NexusNodes {
			waitFor(t, "nexmux_upstream_in_flight{node="+n.Addr()+"} back to 0 once the node let the question go", func() bool {
				return inFlight(n.Addr()) == 0
			})
		}
		return
	}
}
