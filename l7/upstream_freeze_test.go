package l7

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/upstream"
)

// A node that freezes mid-blob (a JVM stuck, a network partition: no FIN,
// no RST) is found down by its probes; the download then resumes from
// another node at once. Before, the client waited on the frozen
// connection until TCP keepalive gave up on it, minutes later.
func TestHABlobPullNodeFrozenMidBody(t *testing.T) {
	blob := []byte(strings.Repeat("0123456789abcdef", 64<<10)) // 1 MiB
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	var frozen atomic.Pointer[string] // the node that freezes
	var froze atomic.Bool
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h := func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		isFrozen := frozen.Load() != nil && *frozen.Load() == local
		if strings.Contains(r.URL.Path, "/service/rest/v1/status") {
			if isFrozen && froze.Load() {
				<-r.Context().Done() // the probe times out
			}
			return
		}
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return // the /v2/ ping
		}
		if serveRange(w, r, blob) {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		if !isFrozen {
			w.Write(blob)
			return
		}
		w.Write(blob[:len(blob)/2])
		w.(http.Flusher).Flush()
		froze.Store(true)
		select { // frozen: the connection stays open, nothing more comes
		case <-release:
		case <-r.Context().Done():
		}
	}
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 0, a, b)
	ns, err := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest)
	if err != nil {
		t.Fatal(err)
	}
	frozen.Store(&ns[0].Host)

	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ref, err := name.NewDigest("team-a.example.com/app@"+digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	l, err := remote.Layer(ref, remote.WithTransport(tr), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed() // verifies the digest at its end
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	if err == nil {
		err = rc.Close()
	}
	if err != nil || n != int64(len(blob)) {
		t.Fatalf("pull from a node that froze mid-body: %d bytes of %d, %v (node state %s)", n, len(blob), err, up.Set().ByHost(ns[0].Host).State())
	}
}
