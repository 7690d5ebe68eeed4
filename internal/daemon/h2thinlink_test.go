//go:build unix

package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/testnet"
)

// throttledConn reads the socket at about rate bytes a second: a client
// behind a thin link, which the kernel paces by the small receive buffer.
type throttledConn struct {
	net.Conn
	rate int
}

func (c *throttledConn) Read(b []byte) (int, error) {
	if len(b) > 8<<10 {
		b = b[:8<<10]
	}
	n, err := c.Conn.Read(b)
	time.Sleep(time.Duration(n) * time.Second / time.Duration(c.rate))
	return n, err
}

// An HTTP/2 client pulls several layers at once over one connection
// (containerd, crane: 3 or 4), so on a thin link each stream gets a share
// of it. --send-timeout is meant to cut a client that stops reading, never
// one that keeps moving: over HTTP/1 ~1 KB/s per connection is enough,
// but over HTTP/2 each write of up to 512 KiB had to be taken within the
// timeout, ~9 KB/s per stream at the default 60 s: four layers over a
// 256 kbit/s link (~8 KB/s each) were cut. Scaled: 2 s timeout, four
// streams sharing 512 KiB/s (128 KiB/s each: 512 KiB takes 4 s, 64 KiB
// half a second), 1.5 MiB layers.
func TestHTTP2StreamsSharingAThinLinkAreNotCut(t *testing.T) {
	cfg := teamRoutes()
	cfg.SendTimeout = 2 * time.Second
	logs := &testnet.Buffer{}
	st := stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	const size = 3 << 19
	dig := seedLayer(t, st, "team-a-hosted", "big", size)
	tr := st.Transport()
	tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
				// A WAN's segment size: loopback's 64 KiB gives nexmux's
				// socket an initial window, and so a send buffer, of MiBs,
				// which no thin link has.
				_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1400)
			})
		}}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return nil, err
		}
		return &throttledConn{Conn: c, rate: 512 << 10}, nil
	}
	defer tr.CloseIdleConnections()
	// One connection first, so the four streams share it.
	req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			resp := getBigBlob(t, st, tr, dig, 2)
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != resp.ContentLength {
				t.Errorf("stream sharing a thin link with three others, reading all along, got %d of %d bytes: %v", n, resp.ContentLength, err)
			}
		})
	}
	wg.Wait()
}
