package l7

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// A status line net/http's client takes but no HTTP status is (three
// digits, outside 100-599) is a broken answer: a JSON 502, its place given
// back. Before, "000" made ReverseProxy's WriteHeader panic with the
// answer's body still open, so the node's --upstream-max-conns place, its
// in-flight count and the connection were never given back, and the client
// got its connection closed; once 1xx answers were filtered it went out as
// a 200, and 600-999 went out as they came.
func TestNexusStatusOutsideHTTPIsRefused(t *testing.T) {
	for _, line := range []string{"000 Zero", "099 Low", "600 High", "999 Max"} {
		n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
			io.WriteString(c, "HTTP/1.1 "+line+"\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
			return true
		})
		addr, up := haProxy(t, io.Discard, 1, &haNode{addr: n.addr})
		tr := &http.Transport{}
		resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil))
		if err != nil {
			t.Errorf("%q: %v", line, err)
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct{ Errors []struct{ Code string } }
			if resp.StatusCode != http.StatusBadGateway || json.Unmarshal(b, &e) != nil || len(e.Errors) != 1 {
				t.Errorf("%q from Nexus: %s %q, want a JSON 502", line, resp.Status, b)
			}
		}
		tr.CloseIdleConnections()
		nothingHeld(t, up)
	}
}

// A node's 502, 503 or 504 (Jetty behind a front that timed out, a
// proxy repository's remote that did) sends a read on to the next node:
// the client gets the other node's answer.
func TestGatewayStatusMovesOn(t *testing.T) {
	for _, code := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/repository/") {
				w.WriteHeader(code)
			}
		})
		b := startNode(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		addr, _ := haProxy(t, io.Discard, 0, a, b)
		for i := 0; i < 50 && a.hits.Load() == 0; i++ {
			if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("one node answering %d: %s %q, want the other's 200", code, resp.Status, body)
			}
		}
		if a.hits.Load() == 0 {
			t.Fatalf("the node answering %d was never tried", code)
		}
	}
}

// A 204 carries no Content-Length (RFC 9110 8.6): one Nexus sends anyway
// (an upload's status, 204 with its Range) never reaches a client. Over
// HTTP/1 net/http drops it; over HTTP/2 it went out as it came, and
// nghttp2-based clients (curl) reset a 204 stream whose content-length is
// not 0.
func TestNoContentLengthOnA204(t *testing.T) {
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nRange: 0-4\r\nDocker-Upload-UUID: u1\r\n\r\n")
		return true
	})
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{DisableKeepAlives: true}
		if h2 {
			tr = h2cTransport(t, nil)
		}
		resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/blobs/uploads/u1", nil))
		if err != nil {
			t.Fatalf("h2 %v: %v", h2, err)
		}
		resp.Body.Close()
		if cl, ok := resp.Header["Content-Length"]; resp.StatusCode != http.StatusNoContent || ok || resp.Header.Get("Range") != "0-4" {
			t.Errorf("h2 %v: %s, Content-Length %q (sent: %v), Range %q; want 204, no Content-Length, Range 0-4", h2, resp.Status, cl, ok, resp.Header.Get("Range"))
		}
	}
}
