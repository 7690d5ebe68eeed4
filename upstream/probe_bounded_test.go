package upstream

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawStatusServer answers every request on a raw connection with write,
// and returns its URL.
func rawStatusServer(t *testing.T, write func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				write(c)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// A status answer is read no further than its headers, and those are
// bounded as a request's answer's are (Jetty sends 8 KiB at most): a node
// whose answer never ends costs a probe nothing, and one that sends
// megabytes of headers is a broken answer, read into memory no further
// than the bound, every probe of every node: not a healthy node.
func TestProbeReadsABoundedAnswer(t *testing.T) {
	var written atomic.Int64
	endless := rawStatusServer(t, func(c net.Conn) {
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
		chunk := []byte(strings.Repeat("x", 32<<10))
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	huge := rawStatusServer(t, func(c net.Conn) {
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("y", 8<<10) + "\r\n"
		for range 4 << 20 / len(line) {
			n, err := fmt.Fprint(c, line)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
		fmt.Fprint(c, "Content-Length: 0\r\n\r\n")
	})
	for _, c := range []struct {
		name, u string
		want    State
	}{
		{"endless body", endless, Writable},
		{"4 MiB of headers", huge, Down},
	} {
		// A second node, refusing, so the probes run in the background.
		s := mustSet(t, c.u, "http://127.0.0.1:1")
		n := s.ByHost(strings.TrimPrefix(c.u, "http://"))
		ctx, cancel := context.WithCancel(context.Background())
		s.Start(ctx, 100*time.Millisecond)
		// Several rounds, however loaded the machine: a verdict needs
		// agree of them.
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && n.State() != c.want; {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(agree+1) * 120 * time.Millisecond)
		cancel()
		if st := n.State(); st != c.want {
			t.Errorf("%s: state %v, want %v (lastError %q; its answers wrote %d bytes of headers in all)", c.name, st, c.want, lastErr(s, n), written.Load())
		}
	}
}

func lastErr(s *Set, n *Node) string {
	for _, ni := range s.Table() {
		if ni.Node == n.Host {
			return ni.LastError
		}
	}
	return ""
}
