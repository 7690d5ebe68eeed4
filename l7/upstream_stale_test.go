package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// A node whose answer runs past its framing (a Content-Length shorter than
// the body; the same goes for a body on a 204, a 304 or a HEAD's answer)
// leaves bytes behind on its keep-alive connection. net/http closes such a
// connection once it notices them ("Unsolicited response"), but a request
// that takes the connection from the pool first gets them as its answer:
// one client's request answered with bytes that were never an answer to
// it. An answer read wholly from bytes the connection held before the
// request was given it is refused.
func TestLeftoverBytesAreNoAnswer(t *testing.T) {
	const leftover = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nleftover!"
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"+leftover)
		return true
	})
	// One place: a request waiting for it gets it, and the pooled
	// connection, the moment the last answer's body ends.
	addr, up := haProxy(t, io.Discard, 1, &haNode{addr: n.addr})
	var stale, sent atomic.Int64
	var wrong sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			for range 150 {
				if stale.Load() > 0 {
					return
				}
				sent.Add(1)
				resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil))
				if err != nil {
					wrong.Store(err.Error(), true)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case string(b) == "leftover!":
					stale.Add(1)
				case resp.StatusCode == http.StatusOK && string(b) == "ok":
				case resp.StatusCode == http.StatusBadGateway && strings.Contains(string(b), `"UNAVAILABLE"`):
				default:
					wrong.Store(resp.Status+" "+string(b), true)
				}
			}
		}()
	}
	wg.Wait()
	if s := stale.Load(); s > 0 {
		t.Fatalf("%d of %d requests got the bytes another answer left on its connection as their answer", s, sent.Load())
	}
	wrong.Range(func(k, _ any) bool { t.Errorf("unexpected answer: %s", k); return true })
	nothingHeld(t, up)
}
