package daemon_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// The nodes are still probed during the stop's drain: reads in flight
// there are served on, and one waiting for the headers of a node that
// froze moves to another once the probes find it down, as it does while
// nexmux serves (TestHABlackholeReadsMove). With the probes stopped at the
// drain's start it waited out --drain-timeout and was cut.
func TestDrainKeepsProbingTheNodes(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	hole := st.NexusNodes[0]
	hole.SetBlackhole(true)
	tr := st.Transport()
	const reads = 8
	got := make(chan string, reads)
	for range reads {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil)
			req.SetBasicAuth(stack.User, stack.Password)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				got <- err.Error()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got <- resp.Status
		}()
	}
	held := func() int {
		c := 0
		for _, rq := range hole.Requests() {
			if strings.Contains(rq.Path, "/repository/") {
				c++
			}
		}
		return c
	}
	haWait(t, "a read waiting on the frozen node", func() bool { return held() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	err := st.Daemon.Shutdown(ctx)
	took := time.Since(t0)
	var answers []string
	for range reads {
		answers = append(answers, <-got)
	}
	bad := 0
	for _, a := range answers {
		if a != "200 OK" {
			bad++
		}
	}
	if err != nil || bad > 0 {
		t.Fatalf("drain with %d read(s) waiting on a node that froze: Shutdown %v after %v; answers %v; want every read moved and answered", held(), err, took.Round(time.Second), answers)
	}
}
