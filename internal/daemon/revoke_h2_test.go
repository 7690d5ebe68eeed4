package daemon_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

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
	dir := t.TempDir()
	file := filepath.Join(dir, "nexmux.yaml")
	writeFile(t, file, "route: [team-a.nexmux.test=team-a, team-b.nexmux.test=team-b]\n")
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{ConfigFile: file, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	img, err := random.Image(8<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.Seed("team-b-hosted", "big", "1", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()

	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", st.Addr)
			if err != nil {
				return nil, err
			}
			return &slowReadConn{Conn: c, rate: 4 << 20}, nil
		},
		TLSClientConfig:   &tls.Config{RootCAs: st.Pool()},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s/v2/big/blobs/%s", st.Host("team-b"), digest), nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("blob: %s over HTTP/%d", resp.Status, resp.ProtoMajor)
	}
	h := sha256.New()
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(h, resp.Body)
		read <- err
	}()
	// nexmux has written the whole blob; the client is still reading it.
	waitLog(t, logs, "msg=request", "/blobs/", "status=200")
	select {
	case err := <-read:
		t.Fatalf("the client read the whole blob before the reload (%v): nothing was in flight", err)
	default:
	}
	writeFile(t, file, "route: [team-a.nexmux.test=team-a, team-b.nexmux.test=team-a]\n")
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatalf("blob in flight when its route moved: %v", err)
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != digest.String() {
		t.Fatalf("blob in flight when its route moved: digest %s, want %s", got, digest)
	}
	// The connection still ends: the route it was routed by is gone.
	req2, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s/v2/", st.Host("team-b")), nil)
	waitFor(t, "the revoked connection to end", func() bool {
		resp, err := tr.RoundTrip(req2)
		if err != nil {
			return false
		}
		resp.Body.Close()
		// A new connection, routed by the new table.
		return resp.StatusCode == http.StatusUnauthorized
	})
}
