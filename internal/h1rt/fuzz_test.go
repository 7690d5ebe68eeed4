package h1rt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// hostileConn is an upstream connection whose server answers with fixed
// bytes, then EOF; it discards what is written to it.
type hostileConn struct {
	r      *bytes.Reader
	closed atomic.Bool
}

var errFakeClosed = errors.New("closed")

func (c *hostileConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, errFakeClosed
	}
	return c.r.Read(p)
}

func (c *hostileConn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, errFakeClosed
	}
	return len(p), nil
}

func (c *hostileConn) Close() error                     { c.closed.Store(true); return nil }
func (c *hostileConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *hostileConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *hostileConn) SetDeadline(time.Time) error      { return nil }
func (c *hostileConn) SetReadDeadline(time.Time) error  { return nil }
func (c *hostileConn) SetWriteDeadline(time.Time) error { return nil }

// cleanAnswer is the oracle: whether answer is exactly one well-formed
// keep-alive response to method (after any 1xx), with nothing after it.
func cleanAnswer(answer []byte, method string) bool {
	br := bufio.NewReader(bytes.NewReader(answer))
	req := &http.Request{Method: method}
	for range max1xx + 1 {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return false
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.StatusCode == 101 {
				return false
			}
			continue
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return false
		}
		if resp.Close {
			return false
		}
		_, err = br.Peek(1)
		return err == io.EOF
	}
	return false
}

func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n2\r\nok\r\n0\r\nX: y\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nok",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody until close",
		"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"garbage\r\n\r\n",
		"",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, answer []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		var conns []*hostileConn
		tr := New(Options{Dial: func(context.Context, string, string) (net.Conn, error) {
			if len(conns) > 0 {
				// One attempt only: a retry would see the same bytes.
				return nil, &net.OpError{Op: "dial", Err: errors.New("no second connection")}
			}
			c := &hostileConn{r: bytes.NewReader(answer)}
			conns = append(conns, c)
			return c, nil
		}})
		defer tr.CloseIdleConnections()
		done := make(chan struct{})
		var pooled int
		go func() {
			defer close(done)
			req, _ := http.NewRequest(method, "http://nexus:8081/v2/", nil)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				io.Copy(io.Discard, io.LimitReader(resp.Body, 16<<20))
				resp.Body.Close()
			}
			pooled = tr.idleCount()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round trip hangs on answer %q", answer)
		}
		if pooled > 0 {
			if !cleanAnswer(answer, method) {
				t.Fatalf("connection pooled after a malformed answer %q", answer)
			}
			if conns[0].closed.Load() {
				t.Fatal("a closed connection was pooled")
			}
		} else if len(conns) == 1 && !conns[0].closed.Load() {
			t.Fatalf("connection neither pooled nor closed after %q", answer)
		}
	})
}
