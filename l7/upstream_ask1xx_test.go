package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/upstream"
)

// The question "who knows this upload" is nexmux's own request: what a
// node says to it never reaches the client. It carried the client's
// ClientTrace (ReverseProxy's), so a node's 1xx to the question was
// written to the client as if its request had got it.
func TestAskQuestionsInformNoClient(t *testing.T) {
	node := func(knows bool) *rawNode {
		return startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
			io.Copy(io.Discard, r.Body)
			switch {
			case r.Method == http.MethodGet && knows:
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
			case r.Method == http.MethodGet:
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
			}
			return true
		})
	}
	a, b := node(false), node(true)
	addr, up := haProxy(t, io.Discard, 4, &haNode{addr: a.addr}, &haNode{addr: b.addr})
	waitUntil(t, "both nodes writable", func() bool {
		for _, n := range up.Set().Nodes() {
			if n.State() != upstream.Writable {
				return false
			}
		}
		return true
	})
	var got []string
	req := teamRequest(addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", strings.NewReader("chunk"))
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, fmt.Sprint(code))
			return nil
		},
	}))
	resp, body := sendRequest(t, req)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %s %s", resp.Status, body)
	}
	if len(got) > 0 {
		t.Errorf("the client, which sent no Expect, got informational answers %v: the nodes' to nexmux's question", got)
	}
	nothingHeld(t, up)
}
