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

// An answer with hundreds of Link entries and a thousand headers (well
// within upstreamMaxResponseHeaderBytes) is rewritten entry by entry:
// each link on the route's repository reaches the client on the public
// name, each leading elsewhere is left out, every header naming the node
// is dropped and every other kept.
func TestManyLinksAndHeadersFromNexus(t *testing.T) {
	const links, headers = 300, 1000
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		var b strings.Builder
		b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nLink: ")
		for i := range links {
			if i > 0 {
				b.WriteString(", ")
			}
			if i%2 == 0 {
				fmt.Fprintf(&b, `<http://%s/repository/team-a/v2/_catalog?n=1&last=r%d>; rel="next"`, node, i)
			} else {
				fmt.Fprintf(&b, `<https://evil.example.com/help/r%d>; rel="help"`, i)
			}
		}
		b.WriteString("\r\n")
		for i := range headers {
			if i%2 == 0 {
				fmt.Fprintf(&b, "X-Node-%d: served by %s\r\n", i, node)
			} else {
				fmt.Fprintf(&b, "X-Other-%d: v%d\r\n", i, i)
			}
		}
		b.WriteString("\r\n{}")
		io.WriteString(c, b.String())
		return true
	})
	node = n.addr
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	resp, body := send(t, addr, http.MethodGet, "/v2/_catalog?n=1", nil)
	if resp.StatusCode != http.StatusOK || body != "{}" {
		t.Fatalf("%s %q, want Nexus's answer", resp.Status, body)
	}
	got := splitLinkValues(resp.Header.Get("Link"))
	if len(got) != links/2 {
		t.Errorf("%d links reached the client, want the %d on the route's repository", len(got), links/2)
	}
	for _, l := range got {
		if !strings.HasPrefix(strings.TrimSpace(l), "<http://team-a.example.com/v2/_catalog?n=1&last=r") {
			t.Errorf("link %q reached the client, want each on the public name", l)
			break
		}
	}
	nodeHeaders, others := 0, 0
	for k := range resp.Header {
		switch {
		case strings.HasPrefix(k, "X-Node-"):
			nodeHeaders++
		case strings.HasPrefix(k, "X-Other-"):
			others++
		}
	}
	if nodeHeaders != 0 || others != headers/2 {
		t.Errorf("%d headers naming the node and %d others reached the client, want 0 and %d", nodeHeaders, others, headers/2)
	}
}
