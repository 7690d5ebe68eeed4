package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that asks to close itself (Connection: close, or HTTP/1.0)
// and sends a sized body whole before it reads gets its refusal whole,
// then the end of the stream: the rest of the body is read after the
// answer, as for any other refused request. net/http's own read after the
// handler skips such a body, and the close was a reset (the client's
// next write of its body failed with a broken pipe, its read after the
// answer with a reset).
func TestRefusalOfWholeBodyArrivesIntactWhenClientCloses(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {})
	addr := stallProxy(t, node, 30*time.Second, 0)
	body := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16) // 200 KiB
	for _, rq := range stalledRefusals {
		for _, closing := range []struct{ name, head string }{
			{"Connection: close", rq.head + "Connection: close\r\n"},
			{"HTTP/1.0", strings.Replace(rq.head, "HTTP/1.1", "HTTP/1.0", 1)},
		} {
			head := fmt.Sprintf("%sContent-Length: %d\r\n\r\n", closing.head, len(body))
			for i := range 4 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if i%2 == 0 {
					_, err = c.Write(append([]byte(head), body...))
				} else {
					// In pieces: the refusal comes before most of it.
					_, err = io.WriteString(c, head)
					for p := body; len(p) > 0 && err == nil; p = p[min(len(p), 16<<10):] {
						time.Sleep(10 * time.Millisecond)
						_, err = c.Write(p[:min(len(p), 16<<10)])
					}
				}
				if err != nil {
					t.Fatalf("%s, %s, %d: writing the request: %v", rq.name, closing.name, i, err)
				}
				br := bufio.NewReader(c)
				readRefusal(t, br, rq.status)
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("%s, %s, %d: after the answer: %v; want the connection closed cleanly (EOF)", rq.name, closing.name, i, err)
				}
				c.Close()
			}
		}
	}
}
