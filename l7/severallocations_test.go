package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// An answer with several Locations (or one holding a list) says nowhere
// which one is meant, and clients take different ones: the client gets
// a 502 Registry API error, never a Location left as Nexus wrote it. The
// same one twice is one.
func TestSeveralLocationsAreNoAnswer(t *testing.T) {
	var node string
	var locs atomic.Value
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n")
		for _, l := range locs.Load().([]string) {
			fmt.Fprintf(c, "Location: "+l+"\r\n", node, node)
		}
		io.WriteString(c, "\r\n")
		return true
	})
	node = n.addr
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	upload := "http://%s/repository/team-a/v2/app/blobs/uploads/u1"
	for _, c := range []struct {
		locs []string
		ok   bool // one rewritten Location, else a 502
	}{
		{[]string{upload + "%.0s", upload + "%.0s"}, true},
		{[]string{"/v2/app/manifests/x%.0s%.0s", upload + "%.0s"}, false},
		{[]string{upload + "%.0s", "https://elsewhere.example.com/x%.0s%.0s"}, false},
		{[]string{upload + ", http://%s/repository/team-b/v2/x"}, false},
	} {
		locs.Store(c.locs)
		resp, body := send(t, addr, http.MethodPost, "/v2/app/blobs/uploads/", nil)
		got := resp.Header.Values("Location")
		switch {
		case strings.Contains(fmt.Sprint(got), node):
			t.Errorf("Locations %q: the client got %q, naming the node", c.locs, got)
		case c.ok && (resp.StatusCode != http.StatusAccepted || len(got) != 1 || !strings.HasPrefix(got[0], "http://team-a.example.com/v2/app/blobs/uploads/u1?_nexmux=")):
			t.Errorf("Locations %q: client got %s, Location %q; want one tagged on the public name", c.locs, resp.Status, got)
		case !c.ok && (resp.StatusCode != http.StatusBadGateway || len(got) != 0 || !strings.Contains(body, `"errors"`)):
			t.Errorf("Locations %q: client got %s, Location %q, body %q; want a 502 Registry API error", c.locs, resp.Status, got, body)
		}
	}
}
