package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// Trailers of Nexus's answers never reach clients. The Registry API has
// none and Jetty sends none; ReverseProxy passed on whatever a node put
// there, undeclared ones to HTTP/1 clients without any check: fields no
// trailer may carry (Content-Length, Transfer-Encoding, Connection), and
// a Location naming a node, which no rewrite sees.
func TestNexusTrailersNeverReachClients(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: Location\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"2\r\nok\r\n0\r\nLocation: http://%s/repository/team-b/\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nSet-Cookie: NXSESSIONID=x\r\n\r\n", node)
		return true
	})
	node = n.addr
	addr, up := haProxy(t, io.Discard, 4, &haNode{addr: n.addr})
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{}
		if h2 {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
		}
		resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if err != nil || resp.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Fatalf("h2 %v: %s %q %v", h2, resp.Status, b, err)
		}
		if len(resp.Trailer) > 0 || resp.Header.Get("Trailer") != "" {
			t.Errorf("h2 %v: Nexus's trailers reached the client: %v (Trailer: %q)", h2, resp.Trailer, resp.Header.Get("Trailer"))
		}
	}
	nothingHeld(t, up)
}

// A client's request trailers never reach Nexus, not even their names:
// the values were never forwarded (the outgoing request's Trailer is cloned
// before the body is read), so a `Trailer:` line would only announce
// fields (X-Forwarded-For, X-Remote-User) that never come.
func TestClientTrailerNamesNeverReachNexus(t *testing.T) {
	declared := make(chan http.Header, 1)
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		declared <- r.Trailer
		io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	addr, _ := haProxy(t, io.Discard, 4, &haNode{addr: n.addr})
	req := teamRequest(addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", io.NopCloser(strings.NewReader("data")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Forwarded-For": {"10.9.9.9"}, "X-Remote-User": {"admin"}}
	resp, _ := sendRequest(t, req)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %s", resp.Status)
	}
	if got := <-declared; len(got) > 0 {
		t.Errorf("Nexus was announced the client's trailers: %v", got)
	}
}
