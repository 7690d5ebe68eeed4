package daemon_test

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

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
