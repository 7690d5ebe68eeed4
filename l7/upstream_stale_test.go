package l7

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A node whose answer runs past its framing (a Content-Length shorter than
// the body; the same goes for a body on a 204, a 304 or a HEAD's answer)
// leaves bytes behind on its keep-alive connection. net/http closes such a
// connection once it notices them ("Unsolicited response"), but a request
// that takes the connection from the pool first gets them as its answer:
// one client's request answered with bytes that were never an answer to
// it. An answer read wholly from bytes the connection held before the
// request was given it is refused.
func TestLeftoverBytesAreNoAnswer(t *testing.T) {
	const leftover = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nleftover!"
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"+leftover)
		return true
	})
	// One place: a request waiting for it gets it, and the pooled
	// connection, the moment the last answer's body ends.
	addr, up := haProxy(t, io.Discard, 1, &haNode{addr: n.addr})
	var stale, sent atomic.Int64
	var wrong sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			for range 150 {
				if stale.Load() > 0 {
					return
				}
				sent.Add(1)
				resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil))
				if err != nil {
					wrong.Store(err.Error(), true)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case string(b) == "leftover!":
					stale.Add(1)
				case resp.StatusCode == http.StatusOK && string(b) == "ok":
				case resp.StatusCode == http.StatusBadGateway && strings.Contains(string(b), `"UNAVAILABLE"`):
				default:
					wrong.Store(resp.Status+" "+string(b), true)
				}
			}
		}()
	}
	wg.Wait()
	if s := stale.Load(); s > 0 {
		t.Fatalf("%d of %d requests got the bytes another answer left on its connection as their answer", s, sent.Load())
	}
	wrong.Range(func(k, _ any) bool { t.Errorf("unexpected answer: %s", k); return true })
	nothingHeld(t, up)
}

// A request's freshness serves another request only once the Transport is
// done with its trace: its answer came on the connection it was given, and
// the request was written whole (an early answer comes while the body is
// still being sent); a round trip that failed may leave the Transport
// reading on.
func TestFreshnessReusedOnlyOnceTheTransportIsDone(t *testing.T) {
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		switch path.Base(r.URL.Path) {
		case "early":
			// Answered before the body is read, which the client is
			// still sending.
			io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
			io.Copy(io.Discard, r.Body)
		case "drop":
			return false
		default:
			io.Copy(io.Discard, r.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		return true
	})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	// ReverseProxy's trace, which the freshness carries.
	proxyTrace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error { return nil }}
	var ctx context.Context
	send := func(path string, body io.Reader) (*freshness, *http.Response, error) {
		f := newFreshness()
		ctx = f.context(httptrace.WithClientTrace(context.Background(), proxyTrace), nil)
		r, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+n.addr+"/repository/x/"+path, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := f.roundTrip(tr, r)
		return f, resp, err
	}

	// The first request's connection is dialed for it: a dial's context
	// may outlive the request (TestFreshnessNotReusedWhileItsRequestsDialGoesOn).
	f, resp, err := send("ok", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if f.reusable() {
		t.Error("a request on a connection not taken idle: reusable")
	}
	f, resp, err = send("ok", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !f.reusable() {
		t.Errorf("a request on an idle connection, answered and written whole: not reusable (tries %d, conns %d, wrote %d)", f.tries.Load(), f.conns.Load(), f.wrote.Load())
	}
	tc, ok := ctx.(*tracedCtx)
	if !ok {
		t.Fatalf("the freshness's context is a %T, want a *tracedCtx", ctx)
	}
	if got := httptrace.ContextClientTrace(tc.Context); got != proxyTrace {
		t.Errorf("the freshness's context hides the trace it carries from its own parent: %p, want %p", got, proxyTrace)
	}
	if got := httptrace.ContextClientTrace(ctx); got != tc.trace || got.GotConn == nil || got.Got1xxResponse == nil || got.WroteRequest == nil {
		t.Errorf("the freshness's context gives trace %p, want its own %p with its hooks", got, tc.trace)
	}

	pr, pw := io.Pipe()
	go pw.Write([]byte("first part"))
	f, resp, err = send("early", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want the early 401", resp.StatusCode)
	}
	if f.reusable() {
		t.Error("answered while the body was still being written: reusable")
	}
	pw.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !f.reusable() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !f.reusable() {
		t.Errorf("the body written whole, the answer taken: still not reusable (tries %d, conns %d, wrote %d)", f.tries.Load(), f.conns.Load(), f.wrote.Load())
	}

	// The failed round trip on an idle connection, dialed before: only
	// its error can tell that it is not reusable.
	_, resp, err = send("ok", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	f, _, err = send("drop", http.NoBody)
	if err == nil {
		t.Fatal("a connection closed without an answer: no error")
	}
	if f.reusable() {
		t.Error("a round trip that failed: reusable")
	}

	// A trace with hooks of its own is composed, not carried: never reused.
	f = newFreshness()
	f.context(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {}}), nil)
	if f.reusable() {
		t.Error("a freshness composed with another trace's hooks: reusable")
	}
}
