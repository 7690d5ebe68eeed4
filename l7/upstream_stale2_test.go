package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/nexmux/nexmux/internal/testnet"
)

// A GET or HEAD that took a connection holding another answer's leftovers
// (here a HEAD's answer with a body) is sent again on another connection
// rather than failed: Nexus did nothing wrong by that request, and sending
// it twice is safe.
func TestLeftoverBytesCostNoRead(t *testing.T) {
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
		return true
	})
	logs := &testnet.Buffer{}
	addr, up := haProxy(t, logs, 1, &haNode{addr: n.addr})
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	var wrong sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			for i := range 150 {
				method := http.MethodGet
				if i%2 == 1 {
					method = http.MethodHead
				}
				resp, err := tr.RoundTrip(teamRequest(addr, method, "/v2/app/manifests/1", nil))
				if err != nil {
					wrong.Store(err.Error(), true)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || method == http.MethodGet && string(b) != "ok" {
					wrong.Store(method+": "+resp.Status+" "+string(b), true)
				}
			}
		}()
	}
	wg.Wait()
	wrong.Range(func(k, _ any) bool { t.Errorf("a read answered otherwise than by Nexus: %s", k); return true })
	nothingHeld(t, up)
}
