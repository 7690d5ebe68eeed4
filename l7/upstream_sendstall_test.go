package l7

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// zeros is an endless request body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A node that stops reading an upload mid-body without closing the
// connection (a JVM frozen while its kernel still holds the socket; a
// partition, where the kernel retransmits for some 15 minutes) held the
// PATCH, and the docker push behind it, for as long: nothing bounded a
// write to Nexus. Like Sonatype's nginx example (proxy_send_timeout), a
// write to a node that takes no byte for upstreamSendTimeout fails, and
// the client gets a retryable JSON 5xx.
func TestUploadToANodeThatStopsReadingFails(t *testing.T) {
	shorten(t, &upstreamSendTimeout, 500*time.Millisecond)
	release := make(chan struct{})
	defer close(release)
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		io.CopyN(io.Discard, r.Body, 1<<10)
		select { // frozen: no read, no answer, the connection stays
		case <-release:
		case <-r.Context().Done():
		}
	})
	addr, _ := haProxy(t, io.Discard, 0, node)
	req := teamRequest(addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", io.LimitReader(zeros{}, 1<<40))
	got := sendLater(req)
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatalf("PATCH: %v", a.err)
		}
		var e struct{ Errors []struct{ Code string } }
		if a.resp.StatusCode/100 != 5 || json.Unmarshal([]byte(a.body), &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "UNAVAILABLE" {
			t.Fatalf("PATCH to a node that stopped reading: %s %s", a.resp.Status, a.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("PATCH to a node that stopped reading: no answer after 20 s")
	}
}

// A write deadline set on the connection to Nexus by its user is kept:
// crypto/tls bounds the close_notify it sends at Close by 5 s, then sets a
// deadline in the past so nothing more is written. upstreamConn.Write put
// its own upstreamSendTimeout in place of both, so closing a TLS
// connection to a node that reads nothing took 120 s (holding the
// Transport's goroutine and the descriptor) instead of 5.
func TestUpstreamConnKeepsTheCallersWriteDeadline(t *testing.T) {
	a, b := net.Pipe() // nobody reads b: every write blocks
	defer b.Close()
	defer a.Close()
	c := &upstreamConn{Conn: a}
	for _, set := range []func(time.Time) error{c.SetWriteDeadline, c.SetDeadline} {
		if err := set(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := c.Write([]byte("close_notify")); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write past the caller's deadline: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("write ignored the caller's 50 ms deadline: still blocked after 10 s")
		}
	}
	// Cleared, the send timeout bounds writes again.
	shorten(t, &upstreamSendTimeout, 50*time.Millisecond)
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Write([]byte("x")); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write to a peer that reads nothing: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("write to a peer that reads nothing: no send timeout after the caller cleared its deadline")
	}
}

// kernelSocket is a net.Conn's write side as Linux's TCP socket behaves
// towards a peer that stopped reading: a write takes what room its send
// buffer has at once, but a writer blocked on a full buffer is woken only
// once a third of the buffer is free (sk_stream_is_writeable), so room
// that opens below that level (the frozen peer's kernel still taking a
// little) is used only by the next write. Writes block until their
// deadline.
type kernelSocket struct {
	net.Conn // nil: any other use panics
	mu       sync.Mutex
	room     int
	deadline time.Time
	opened   time.Time // when the peer last made room
}

func (k *kernelSocket) SetWriteDeadline(t time.Time) error {
	k.mu.Lock()
	k.deadline = t
	k.mu.Unlock()
	return nil
}

func (k *kernelSocket) Write(b []byte) (int, error) {
	k.mu.Lock()
	n := min(len(b), k.room)
	k.room -= n
	d := k.deadline
	k.mu.Unlock()
	if n == len(b) {
		return n, nil
	}
	time.Sleep(time.Until(d)) // never woken: no third of the buffer frees
	return n, &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}
}

func (k *kernelSocket) open(n int) {
	k.mu.Lock()
	k.room += n
	k.opened = time.Now()
	k.mu.Unlock()
}

func (k *kernelSocket) lastOpened() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.opened
}

// A push to a frozen Nexus (SIGSTOP, a long GC) failed after three send
// timeouts, 360 s, where the README promises at most two: a blocked write
// that had taken bytes at its start counted them as progress at its
// deadline and began a whole timeout afresh, and so did the next write,
// which took the room that had opened meanwhile below the kernel's wake-up
// level (measured: 29588 bytes of a 32 KiB write before the freeze, then
// 258752 bytes of the next write at once, then nothing). Progress is now
// looked for every eighth of the timeout, so the write fails within an
// eighth or two of it past the node's last byte.
func TestFrozenNodeFailsAWriteWithinTheSendTimeout(t *testing.T) {
	const timeout = time.Second
	shorten(t, &upstreamSendTimeout, timeout)
	k := &kernelSocket{room: 29588}
	c := &upstreamConn{Conn: k}
	go func() {
		time.Sleep(50 * time.Millisecond) // the first write is blocked by then
		k.open(262144)                    // below the wake-up level
	}()
	began := time.Now()
	_, err := c.Write(make([]byte, 32<<10)) // the chunk that fills the Transport's buffer
	if err == nil {
		_, err = c.Write(make([]byte, bodyBatchSize-32<<10)) // the rest of the batch
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writes to a frozen node: %v, want the send timeout", err)
	}
	// Measured from the node's last byte (the room it made 50 ms in): an
	// eighth or two beyond one timeout now, three timeouts before; the
	// README's bound is two.
	if since, waited := time.Since(k.lastOpened()), time.Since(began); since >= 2*timeout {
		t.Fatalf("write failed %v after the node last took a byte (%v in all), want under %v", since.Round(time.Millisecond), waited.Round(time.Millisecond), 2*timeout)
	}
}
