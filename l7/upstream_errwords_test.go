package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// Each way the exchange with Nexus fails gets words that say which it was:
// "not reachable" for a Nexus that takes no connection sent operators to a
// running Nexus when a connection broke mid-answer or Nexus answered
// something that is no HTTP, and did not say a timeout was one.
func TestUpstreamFailureWordsSayWhatFailed(t *testing.T) {
	shorten(t, &upstreamReadStallTimeout, 300*time.Millisecond)
	closed := testnet.Listen(t)
	closedAddr := closed.Addr().String()
	closed.Close()
	broken := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		return false // closes without a word
	})
	garbage := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
		return false
	})
	silent := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		time.Sleep(3 * time.Second)
		return false
	})
	for _, tc := range []struct {
		name, node string
		status     int
		words      string
	}{
		{"refused", closedAddr, http.StatusServiceUnavailable, "Nexus is not reachable"},
		{"closed without an answer", broken.addr, http.StatusBadGateway, "connection to Nexus broke"},
		{"no HTTP answer", garbage.addr, http.StatusBadGateway, "Nexus's answer could not be read"},
		{"no answer in time", silent.addr, http.StatusGatewayTimeout, "Nexus did not answer in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := haProxy(t, io.Discard, 4, &haNode{addr: tc.node})
			// A PATCH is never sent twice, so one attempt decides.
			resp, body := send(t, addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", strings.NewReader("data"))
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.words) || !strings.Contains(body, `"UNAVAILABLE"`) {
				t.Errorf("%s %s, want %d with %q", resp.Status, body, tc.status, tc.words)
			}
		})
	}
}
