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

// The linger after a refusal has bounds of its own, nginx's
// lingering_time and lingering_timeout (shortened here), when
// --body-timeout is longer or 0 (never): a client that trickles its body
// a byte at a time is closed once the linger's time is up, one that
// stalls once a read has waited its idle bound. Before, they held the
// connection for --body-timeout, with 0 until 256 KiB had come.
func TestRefusalLingerHasItsOwnBounds(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {})
	// Bounds far apart from the other's, and slack far above a loaded
	// machine's pauses: a linger bounded only by the other closes later
	// than the bound checked.
	for _, tc := range []struct {
		name          string
		bodyTO        time.Duration // -1: never
		total, idle   time.Duration
		every         time.Duration // 0: the client sends nothing more
		within, slack time.Duration
	}{
		{"trickling, lingering time", -1, 2 * time.Second, time.Minute, 100 * time.Millisecond, 2 * time.Second, 8 * time.Second},
		{"stalled, lingering timeout", -1, time.Minute, time.Second, 0, time.Second, 8 * time.Second},
		{"stalled, lingering timeout under a longer --body-timeout", time.Hour, time.Minute, time.Second, 0, time.Second, 8 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, _ := haProxyWrapped(t, io.Discard, 0, "team-a", Config{BodyTimeout: tc.bodyTO}, 50*time.Millisecond, func(h http.Handler) http.Handler {
				h.(*Proxy).lingerTime, h.(*Proxy).lingerIdle = tc.total, tc.idle
				return h
			}, "http://"+node.addr)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_ = c.SetReadDeadline(start.Add(tc.within + tc.slack))
			if _, err := io.WriteString(c, stalledRefusals[0].head+"Content-Length: 100000\r\n\r\nabc"); err != nil {
				t.Fatal(err)
			}
			if tc.every > 0 {
				trickleClient(t, c, tc.every)
			}
			br := bufio.NewReader(c)
			readRefusal(t, br, stalledRefusals[0].status)
			answered := time.Since(start)
			// The end of the stream, or a reset if a byte came after
			// the linger stopped reading: closed either way.
			_, err = io.Copy(io.Discard, br)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open %v after the answer; want it closed within %v", time.Since(start)-answered, tc.within)
			}
			t.Logf("answered after %v, closed %v after it (%v)", answered.Round(time.Millisecond), (time.Since(start) - answered).Round(time.Millisecond), err)
		})
	}
}

// A drain ends the lingers going on at once, and those that would begin
// after it: a refused client trickling its body has nothing in flight,
// and held the drain (a replica's restart) up to --drain-timeout.
func TestDrainEndsLingers(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {})
	var p *Proxy
	addr, _ := haProxyWrapped(t, io.Discard, 0, "team-a", Config{BodyTimeout: -1}, 50*time.Millisecond, func(h http.Handler) http.Handler {
		p = h.(*Proxy)
		p.lingerTime, p.lingerIdle = time.Hour, time.Hour
		return h
	}, "http://"+node.addr)
	refused := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, stalledRefusals[0].head+"Content-Length: 100000\r\n\r\nabc"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		readRefusal(t, br, stalledRefusals[0].status)
		return c, br
	}
	closedWithin := func(c net.Conn, br *bufio.Reader, d time.Duration) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(d))
		// The end of the stream, or a reset: closed either way.
		if _, err := io.Copy(io.Discard, br); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open %v after the drain began", d)
			}
		}
	}
	c, br := refused()
	// The linger is reading: it still holds the connection.
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.ReadByte(); err == nil || !err.(net.Error).Timeout() {
		t.Fatalf("before the drain: %v; want the connection held by the linger", err)
	}
	p.DrainBegan()
	closedWithin(c, br, 10*time.Second)
	c, br = refused()
	closedWithin(c, br, 10*time.Second)
}
