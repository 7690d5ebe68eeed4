package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A node whose blob store cuts every blob short (CutBlobAfter) while the
// other node serves them whole: each pull resumes its layers from the
// other node and verifies, and the cutting node is ejected within a few
// pulls, as the README's failure table says; /readyz stays ready and the
// resumes are counted.
func TestHANodeCuttingEveryBlobIsEjected(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	img, _ := random.Image(4<<10, 40) // forty layers: about half start on each node, five at least
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	bad := st.NexusNodes[0]
	bad.SetCutBlobAfter(1 << 10)
	set := st.Runtime.Upstreams.Set()
	isEjected := func() bool {
		for _, n := range set.Table() {
			if n.Node == bad.Addr() && !n.EjectedUntil.IsZero() {
				return true
			}
		}
		return false
	}
	for i := 0; i < 10 && !isEjected(); i++ {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		got, err := pullDigestCtx(ctx, st.Host("team-a")+"/base:1", h1(st))
		cancel()
		if err != nil || got != want {
			t.Fatalf("pull %d: %v %v, want %s", i, got, err, want)
		}
	}
	if !isEjected() {
		t.Fatalf("after 10 pulls, %s, which cuts every blob, is not ejected: %+v", bad.Name(), set.Table())
	}
	if ok, why := set.Readable(false); !ok {
		t.Fatalf("not ready with one node serving: %s", why)
	}
	if counterValue(t, st.Daemon, "nexmux_upstream_resumes_total", nil) == 0 {
		t.Fatal("no resume counted")
	}
}
