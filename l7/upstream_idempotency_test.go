package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// When a write is sent again is nexmux's rule (README, "Where requests
// go"), never the client's: with Idempotency-Key or X-Idempotency-Key on
// it, net/http's Transport itself sent a bodiless write again when the
// reused connection it went on broke after Nexus read it. An upload's
// closing PUT (which commits the blob) reached Nexus twice, the second
// answered 404 BLOB_UPLOAD_UNKNOWN.
func TestClientIdempotencyKeyResendsNoWrite(t *testing.T) {
	var writes atomic.Int64
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodGet {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			return true
		}
		writes.Add(1)
		return false // read, then the connection breaks unanswered
	})
	addr, up := haProxy(t, io.Discard, 2, &haNode{addr: n.addr})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for _, h := range []string{"Idempotency-Key", "X-Idempotency-Key"} {
		for _, w := range []struct{ method, path string }{
			{http.MethodPut, "/v2/app/blobs/uploads/u1?digest=sha256:" + strings.Repeat("ab", 32)},
			{http.MethodDelete, "/v2/app/manifests/sha256:" + strings.Repeat("ab", 32)},
		} {
			// A pooled connection to Nexus for the write to go on.
			resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			writes.Store(0)
			req := teamRequest(addr, w.method, w.path, nil)
			req.Header.Set(h, "k1")
			resp, err = tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := writes.Load(); got != 1 || resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s with %s: Nexus got it %d times, client %s; want once, a 502", w.method, h, got, resp.Status)
			}
		}
	}
	nothingHeld(t, up)
}
