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

// The address of the node that answered reaches the client in no header:
// not in one nexmux knows nothing of (a front's Via, a node's own name
// for itself), and not in the query of a URL it maps onto the public
// name, which keeps its query as Nexus wrote it. Such a header is left
// out, as a URL on another host is.
func TestNodeAddressInNoHeader(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		host, _, _ := net.SplitHostPort(node)
		fmt.Fprintf(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nDocker-Upload-UUID: u1\r\nRange: 0-0\r\n"+
			"Location: /repository/team-a/v2/app/blobs/uploads/u1?next=http://%s/service/rest\r\n"+
			"Link: </v2/_catalog?last=%s>; rel=\"next\"\r\n"+
			"Via: 1.1 %s (front)\r\nX-Nexus-Node: %s\r\n\r\n", node, node, node, host)
		return true
	})
	node = n.addr
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	host, _, _ := net.SplitHostPort(node)
	resp, _ := send(t, addr, http.MethodPost, "/v2/app/blobs/uploads/", nil)
	for k, vs := range resp.Header {
		for _, v := range vs {
			if strings.Contains(v, host) {
				t.Errorf("%s: %q names the node", k, v)
			}
		}
	}
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Docker-Upload-Uuid") != "u1" || resp.Header.Get("Range") != "0-0" {
		t.Errorf("%s %v: want Nexus's 202 with its other headers", resp.Status, resp.Header)
	}
}
