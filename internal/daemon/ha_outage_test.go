package daemon_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A node passively ejected for its 503s, then the other node goes down:
// the ejected node, whose probes pass and which answers again, is the only
// node left. Passive ejection only steers requests to the other nodes;
// with none left it must not refuse every request ("no Nexus node is
// reachable") until the ejection ends (10 s, up to 160 s once it repeats).
func TestHAEjectedNodeServesWhenTheOtherGoesDown(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	bad, other := st.NexusNodes[0], st.NexusNodes[1]
	bad.SetRepositoryUnavailable(true)
	tr := st.Transport()
	url := "https://" + st.Host("team-a") + "/v2/base/manifests/1"
	for i := 0; i < 300 && reposOn(bad) < 5; i++ {
		if resp, body := do(t, tr, http.MethodGet, url, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("manifest GET: %s %s", resp.Status, body)
		}
	}
	ejectedUntil := func() time.Time {
		for _, n := range st.Runtime.Upstreams.Set().Table() {
			if n.Node == bad.Addr() {
				return n.EjectedUntil
			}
		}
		return time.Time{}
	}
	until := ejectedUntil()
	if until.IsZero() {
		t.Fatal("node not ejected")
	}
	bad.SetRepositoryUnavailable(false)
	if err := other.SetDown(true); err != nil {
		t.Fatal(err)
	}
	haWait(t, "the other node found down", func() bool {
		for _, n := range st.Runtime.Upstreams.Set().Table() {
			if n.Node == other.Addr() {
				return n.State == "down"
			}
		}
		return false
	})
	resp, body := do(t, tr, http.MethodGet, url, nil)
	if left := time.Until(until); resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest GET with the other node down and %s still ejected for %v (its probes pass): %s %s", bad.Name(), left.Round(time.Second), resp.Status, body)
	}
}
