package daemon_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A request net/http refuses before nexmux's handler sees it (a garbage
// request line, headers over the limit) has no access line and is not in
// nexmux_requests_total; its refusal lines are limited to 10 a second. So
// each is counted in nexmux_handshake_failures_total{reason=
// "malformed_request"}, as other refused connections are: net/http closes
// the connection after its answer.
func TestRequestsNetHTTPRefusesAreCounted(t *testing.T) {
	st, _ := logStack(t, teamRoutes())
	reason := map[string]string{"reason": "malformed_request"}
	before := counterValue(t, st.Daemon, "nexmux_handshake_failures_total", reason)
	host := "Host: " + st.Host("team-a") + "\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"garbage request line", "GARBAGE\r\n\r\n", http.StatusBadRequest},
		{"headers too large", "GET /v2/ HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 80<<10) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
	} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
			&tls.Config{ServerName: "team-a." + stack.Domain, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, tc.req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != tc.status {
			t.Fatalf("%s: %v %v, want %d", tc.name, resp, err, tc.status)
		}
		c.Close()
	}
	if got := counterValue(t, st.Daemon, "nexmux_handshake_failures_total", reason) - before; got != 2 {
		t.Errorf("nexmux_handshake_failures_total{reason=malformed_request} grew by %v for two requests net/http refused, want 2", got)
	}
}
