package daemon_test

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// slowReadConn reads its socket at rate bytes a second: a client on a
// slow link, whose last bytes are still in the kernel's buffers when
// nexmux has written the whole response.
type slowReadConn struct {
	net.Conn
	rate int
}

func (c *slowReadConn) Read(p []byte) (int, error) {
	p = p[:min(len(p), 16<<10)]
	n, err := c.Conn.Read(p)
	time.Sleep(time.Duration(n) * time.Second / time.Duration(c.rate))
	return n, err
}

// A reload that moves a route lets the HTTP/2 response in flight on it
// reach the client whole, as it does over HTTP/1.1: nexmux has written the
// blob and its stream is done, but the client is still reading it and
// sends WINDOW_UPDATEs meanwhile; closing the socket under them resets
// the connection and the client loses the blob's tail.
func TestReloadLetsRevokedHTTP2ResponseArriveWhole(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	writeFile(t, file, "route: [team-a.nexmux.test=team-a, team-b.nexmux.test=team-b]\n")
	b := newSlowBlob(t, stack.Options{ConfigFile: file}, 4<<20)
	read := b.start(t)
	writeFile(t, file, "route: [team-a.nexmux.test=team-a, team-b.nexmux.test=team-a]\n")
	if err := b.st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatalf("blob in flight when its route moved: %v", err)
	}
	// The connection still ends: the route it was routed by is gone.
	req2, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s/v2/", b.st.Host("team-b")), nil)
	waitFor(t, "the revoked connection to end", func() bool {
		resp, err := b.tr.RoundTrip(req2)
		if err != nil {
			return false
		}
		resp.Body.Close()
		// A new connection, routed by the new table.
		return resp.StatusCode == http.StatusUnauthorized
	})
}

// protoRecorder records the HTTP version of every response.
type protoRecorder struct {
	http.RoundTripper
	h1 atomic.Int64
}

func (p *protoRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := p.RoundTripper.RoundTrip(r)
	if err == nil && resp.ProtoMajor != 2 {
		p.h1.Add(1)
	}
	return resp, err
}

// A registry client's request sent right after a reload revoked its idle
// HTTP/2 connection succeeds. nexmux closed such a connection 50 ms after
// the reload (time for net/http to flush, which a connection idle that
// long has done), and a request the client sent meanwhile got a 421,
// which go-containerregistry (crane), like net/http, does not retry: the
// client's first request after a reload failed. Now the connection reads
// no more from the reload on, so such a request is lost with it, which
// crane retries on a new connection. (net/http's HTTP/2 server sends one
// connection a GOAWAY, which every client would retry, only with a
// response.)
func TestRequestRightAfterReloadRevokingIdleHTTP2Connection(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	writeFile(t, file, "route: [team-a.nexmux.test=team-a, team-b.nexmux.test=team-b]\n")
	st := stack.Start(t, stack.Options{ConfigFile: file})
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	for _, repo := range []string{"team-a-hosted", "team-b-hosted"} {
		if err := st.Nexus.Seed(repo, "img", "1", img); err != nil {
			t.Fatal(err)
		}
	}
	tr := &protoRecorder{RoundTripper: st.Transport()}
	t.Cleanup(tr.RoundTripper.(*http.Transport).CloseIdleConnections)
	opts := []remote.Option{remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}), remote.WithContext(ctxT(t))}
	r := ref(t, st.Host("team-b")+"/img:1")
	head := func(when string) {
		t.Helper()
		if d, err := remote.Head(r, opts...); err != nil || d.Digest != want {
			t.Fatalf("%s: %v, %v", when, d, err)
		}
	}
	// team-b's route moves between the two repositories, each move
	// revoking the connection the last HEAD left idle.
	for i, repo := range []string{"team-a", "team-b", "team-a", "team-b"} {
		head(fmt.Sprintf("move %d, before", i))
		// Idle a while, as between a client's pulls: net/http has
		// flushed all it wrote.
		time.Sleep(200 * time.Millisecond)
		writeFile(t, file, "route: [team-a.nexmux.test=team-a, team-b.nexmux.test="+repo+"]\n")
		if err := st.Daemon.Reload(); err != nil {
			t.Fatal(err)
		}
		head(fmt.Sprintf("move %d, right after the reload", i))
	}
	if n := tr.h1.Load(); n != 0 {
		t.Fatalf("%d answers over HTTP/1: the test wants HTTP/2", n)
	}
}
