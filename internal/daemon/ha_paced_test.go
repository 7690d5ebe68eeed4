package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// pausingReader stops for pause once, when it has read at bytes.
type pausingReader struct {
	r       io.Reader
	n, at   int
	pause   time.Duration
	stopped bool
}

func (p *pausingReader) Read(b []byte) (int, error) {
	k, err := p.r.Read(b)
	p.n += k
	if !p.stopped && p.n >= p.at {
		p.stopped = true
		time.Sleep(p.pause)
	}
	return k, err
}

// A client that stops reading a large layer for longer than Nexus's Jetty
// waits on a blocked write (its idle timeout: 1 s here, 30 s in Nexus)
// through a single Nexus: Nexus cuts its response, and nexmux resumes from
// the same Nexus, so the client gets the layer whole.
func TestPausedClientPullsALargeLayerFromOneNexus(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: haConfig(), Fixture: fixtures.Config{IdleTimeout: time.Second}})
	img, err := random.Image(40<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	tr := h1(st)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(64 << 10)
		}
		return c, err
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/blobs/"+ld.String(), nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rangedReqs := func() int {
		n := 0
		for _, rq := range st.Nexus.Requests() {
			if rq.Header.Get("Range") != "" && strings.HasSuffix(rq.Path, "/blobs/"+ld.String()) {
				n++
			}
		}
		return n
	}
	// One stop of three of Nexus's idle timeouts, once the buffers between
	// Nexus and the client (tens of MB) may fill; l7's tests stop twice.
	h := sha256.New()
	n, err := io.Copy(h, &pausingReader{r: resp.Body, at: 1 << 20, pause: 3 * time.Second})
	ranged := rangedReqs()
	if err != nil || "sha256:"+hex.EncodeToString(h.Sum(nil)) != ld.String() {
		t.Fatalf("%s: %d bytes, %v, digest matches: %v (%d ranged requests to Nexus)", resp.Status, n, err, "sha256:"+hex.EncodeToString(h.Sum(nil)) == ld.String(), ranged)
	}
	if ranged == 0 {
		t.Fatal("Nexus was asked for no range: its writes were not cut, the test did not test")
	}
}
