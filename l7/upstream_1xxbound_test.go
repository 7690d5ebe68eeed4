package l7

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
)

// A run of informational answers from Nexus is bounded as net/http's
// Transport once bounded it (max1xxResponses, 5 a response; it now counts
// only their header bytes, and not at all once a ClientTrace takes them,
// as ReverseProxy's does): beyond, the client gets a 502 Registry API
// error, not each one passed on until the header timeout.
func TestInformationalAnswersBounded(t *testing.T) {
	var count atomic.Int64
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", int(count.Load()))+"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	const bound = 5
	for _, c := range []struct {
		count  int
		status int
	}{{bound, http.StatusOK}, {50, http.StatusBadGateway}} {
		count.Store(int64(c.count))
		got := 0
		req := teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(int, textproto.MIMEHeader) error { got++; return nil },
		}))
		resp, body := sendRequest(t, req)
		var e struct{ Errors []struct{ Code string } }
		if resp.StatusCode != c.status || c.status != http.StatusOK && (json.Unmarshal([]byte(body), &e) != nil || len(e.Errors) != 1) {
			t.Errorf("Nexus sent %d 100 Continue: client got %s %q (after %d informational answers); want %d", c.count, resp.Status, body, got, c.status)
		}
		if got > bound {
			t.Errorf("Nexus sent %d 100 Continue: client got %d of them, want at most %d", c.count, got, bound)
		}
	}
}
