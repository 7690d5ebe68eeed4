package l7

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// jettyWrite writes b in 32 KiB pieces, each of which must be taken within
// idle: Jetty fails a write that makes no progress for its idle timeout.
func jettyWrite(w http.ResponseWriter, b []byte, idle time.Duration) error {
	rc := http.NewResponseController(w)
	for len(b) > 0 {
		k := min(len(b), 32<<10)
		rc.SetWriteDeadline(time.Now().Add(idle))
		if _, err := w.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

// jettyBlobNode serves blob, and single ranges of it, with Jetty's write
// idle timeout (idle); cuts counts the writes it gave up, ranged the
// ranged requests.
func jettyBlobNode(blob []byte, idle time.Duration, cuts, ranged *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		from, to := 0, len(blob)-1
		if rg := r.Header.Get("Range"); rg != "" {
			ranged.Add(1)
			if _, err := fmt.Sscanf(rg, "bytes=%d-%d", &from, &to); err != nil || from > to || to >= len(blob) {
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(blob)))
			w.Header().Set("Content-Length", strconv.Itoa(to-from+1))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		}
		if jettyWrite(w, blob[from:to+1], idle) != nil {
			cuts.Add(1)
			panic(http.ErrAbortHandler)
		}
	}
}

// A client slower than what a Nexus node's blocked write waits for (Jetty's
// idle timeout, here 1 s) pulls a layer larger than the buffers between
// them from a single node: the node cuts its response while nexmux is
// still passing on what it read, which is no fault of the node's, and the
// download goes on from the same node where it broke, intact.
func TestPacedDownloadResumesOnTheSameNode(t *testing.T) {
	const size, rate = 20 << 20, 2 << 20
	blob := make([]byte, size)
	for i := range blob {
		blob[i] = byte(i*7 + i>>13)
	}
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	var cuts, ranged atomic.Int64
	n := startNode(t, jettyBlobNode(blob, time.Second, &cuts, &ranged))
	addr, _ := haProxy(t, io.Discard, 0, n)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(c, "GET /v2/app/blobs/%s HTTP/1.1\r\nHost: team-a.example.com\r\nConnection: close\r\n\r\n", digest)
	// The client reads at rate; its whole answer is checked.
	var got []byte
	buf := make([]byte, 16<<10)
	start := time.Now()
	for {
		k, err := c.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			break
		}
		if d := time.Duration(float64(len(got))/rate*float64(time.Second)) - time.Since(start); d > 0 {
			time.Sleep(d)
		}
	}
	head, body, ok := bytes.Cut(got, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no answer: %q", got)
	}
	if cuts.Load() == 0 {
		t.Fatalf("the node never cut a write: the test did not test (answer %q, %d body bytes)", head, len(body))
	}
	if len(body) != size {
		t.Fatalf("after %d cut(s) of the node's writes, the client got %d of %d body bytes (%d ranged requests)", cuts.Load(), len(body), size, ranged.Load())
	}
	if sha256.Sum256(body) != sum {
		t.Fatal("the body is not the blob")
	}
}
