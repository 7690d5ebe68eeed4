package daemon_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// Broken client bodies are the client's fault (issue 17 point 11): with
// an HA node set, a run of them never ejects a node (issue 15 point 3
// counts only Nexus's own failures).
func TestHABrokenClientBodiesEjectNoNode(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig()})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	host := st.Host("team-a")
	// Malformed chunking first: over 2 nodes, 12 in a row would be 5 on
	// one node if they counted. Then bodies shorter than Content-Length.
	for i := range 16 {
		head, body := "Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n"
		if i >= 12 {
			head, body = "Content-Length: 100000\r\n", strings.Repeat("a", 10)
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
			&tls.Config{ServerName: "team-a." + stack.Domain, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "POST /v2/ha/app/blobs/uploads/?digest=sha256:"+strings.Repeat("0", 64)+" HTTP/1.1\r\nHost: "+host+
			"\r\nAuthorization: "+auth+"\r\nContent-Type: application/octet-stream\r\n"+head+"\r\n"+body)
		c.CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("request %d: no answer: %v", i, err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("request %d: %d, want 400", i, resp.StatusCode)
		}
	}
	for _, n := range st.Runtime.Upstreams.Set().Table() {
		if !n.EjectedUntil.IsZero() || strings.Contains(n.LastError, "client") {
			t.Errorf("node %s blamed for clients' broken bodies: ejected until %v, last error %q", n.Node, n.EjectedUntil, n.LastError)
		}
	}
}
