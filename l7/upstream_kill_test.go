package l7

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/upstream"
)

// A go-containerregistry pull through nexmux while the node serving the
// layer crashes mid-blob (listener closed, connections reset): the pull
// completes, the layer's digest verifies, and another node's log shows the
// resumed "Range: bytes=N-" request.
func TestHABlobPullNodeKilledMidBody(t *testing.T) {
	_, nodes := haCluster(t, 3)
	logs := &testnet.Buffer{}
	addr, up := haProxyURLs(t, logs, 0, haRepo, nodeURLs(nodes)...)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	auth := []remote.Option{remote.WithAuth(&authn.Basic{Username: haUser, Password: haPass}), remote.WithTransport(tr), remote.WithContext(t.Context())}
	ref, err := name.ParseReference("team-a.example.com/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(2<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, auth...); err != nil {
		t.Fatalf("push: %v\n%s", err, logs)
	}
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	size, _ := layers[0].Size()

	// The layer's rendezvous node serves it, slowly enough to die mid-body.
	cands, err := up.Set().Pick(upstream.ReadDigest, haRepo+"@"+digest.String())
	if err != nil {
		t.Fatal(err)
	}
	var victim *fixtures.Node
	for _, n := range nodes {
		n.ResetRequests()
		if n.Addr() == cands[0].Host {
			victim = n
		}
	}
	victim.SetSlow(0, 1<<20)

	pulled, err := remote.Image(ref, auth...)
	if err != nil {
		t.Fatal(err)
	}
	pls, err := pulled.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := pls[0].Compressed() // verifies the digest at its end
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, 256<<10); err != nil {
		t.Fatal(err)
	}
	if err := victim.SetKilled(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.SetKilled(false) })
	rest, err := io.Copy(io.Discard, rc)
	if err != nil {
		t.Fatalf("pull after the kill: %v\n%s", err, logs)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if got := 256<<10 + rest; got != size {
		t.Fatalf("layer: %d bytes of %d", got, size)
	}

	var resumed []string
	for _, n := range nodes {
		for _, rq := range n.Requests() {
			if n == victim || !strings.HasSuffix(rq.Path, "/blobs/"+digest.String()) {
				continue
			}
			rg := rq.Header.Get("Range")
			from, _, ok := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
			if off, err := strconv.ParseInt(from, 10, 64); ok && err == nil && off > 0 && off < size {
				resumed = append(resumed, fmt.Sprintf("%s %s %d", n.Name(), rg, rq.Status))
			}
		}
	}
	if len(resumed) == 0 {
		t.Fatalf("no node served a resumed Range request\n%s", logs)
	}
	// A node that died is no paced break.
	if all, paced := resumeCounts(t, up.Set()); all < 1 || paced != 0 {
		t.Fatalf("nexmux_upstream_resumes_total %v, nexmux_upstream_paced_resumes_total %v after a failover resume", all, paced)
	}
	t.Logf("resumed: %v", resumed)
}
