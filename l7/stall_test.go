package l7

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// stallProxy serves a Proxy with the given stall timeouts in front of node.
func stallProxy(t *testing.T, node *haNode, bodyTO, sendTO time.Duration) string {
	t.Helper()
	addr, _ := haProxyConfig(t, io.Discard, 0, "team-a", Config{BodyTimeout: bodyTO, SendTimeout: sendTO}, "http://"+node.addr)
	return addr
}

// trickleClient writes a byte to c every interval until the test ends or a
// write fails: a client still sending, too slowly to matter.
func trickleClient(t *testing.T, c net.Conn, every time.Duration) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
		}
	}()
}

// stalledClient opens a connection with a small receive buffer and writes
// raw, then reads nothing.
func stalledClient(t *testing.T, addr, raw string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return c
}

// finishes waits for Nexus's handler to end, which it does only once
// nexmux lets go of its connection.
func finishes(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Nexus's connection still held after 10 s", what)
	}
}

// A client that stops reading a blob is cut after --send-timeout: the
// Nexus connection it held is let go.
func TestClientThatStopsReadingIsCut(t *testing.T) {
	done := make(chan struct{})
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return
		}
		defer close(done)
		w.Header().Set("Content-Length", fmt.Sprint(256<<20))
		chunk := make([]byte, 1<<20)
		for range 256 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	addr := stallProxy(t, node, 0, 300*time.Millisecond)
	stalledClient(t, addr, "GET /v2/app/blobs/sha256:"+strings.Repeat("0", 64)+" HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n")
	finishes(t, done, "blob download nobody reads")
	// The same proxy still serves: the cut ended one response, not the
	// listener.
	ok := stalledClient(t, addr, "GET /v2/ HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n")
	_ = ok.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(ok), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("next request: %v %v", resp, err)
	}
}

// Over HTTP/2 a client that keeps its stream's flow-control window shut
// blocks even a small write: a blob whose first piece from Nexus is small
// held its Nexus connection for as long as the client liked, since only
// large writes had a deadline.
func TestHTTP2ClientWithShutWindowIsCut(t *testing.T) {
	done := make(chan struct{})
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		defer close(done)
		w.Header().Set("Content-Length", fmt.Sprint(64<<20))
		// A small first piece, on its own.
		if _, err := w.Write(make([]byte, 8<<10)); err != nil {
			return
		}
		http.NewResponseController(w).Flush()
		chunk := make([]byte, 1<<20)
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	addr := stallProxy(t, node, 0, 300*time.Millisecond)
	tr := h2cTransport(t, &http.HTTP2Config{MaxReceiveBufferPerStream: 1})
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/app/blobs/sha256:"+strings.Repeat("0", 64), nil)
	req.Host = "team-a.example.com"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("got %s, want HTTP/2", resp.Proto)
	}
	finishes(t, done, "blob download over a stream whose window stays shut")
}

// uploadSink is a node that reads an upload to its end or its failure;
// got and err hold what it read once done is closed.
type uploadSink struct {
	node *haNode
	done chan struct{}
	got  int64
	err  error
}

func newUploadSink(t *testing.T) *uploadSink {
	s := &uploadSink{done: make(chan struct{})}
	s.node = startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		defer close(s.done)
		s.got, s.err = io.Copy(io.Discard, r.Body)
	})
	return s
}

// h2cTransport speaks HTTP/2 without TLS (the proxy under test serves
// h2c), with cfg's settings.
func h2cTransport(t *testing.T, cfg *http.HTTP2Config) *http.Transport {
	tr := &http.Transport{Protocols: new(http.Protocols), HTTP2: cfg}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// A client that stops sending its upload is cut after --body-timeout, and
// Nexus sees the upload end incomplete.
func TestClientThatStopsSendingIsCut(t *testing.T) {
	sink := newUploadSink(t)
	node, done := sink.node, sink.done
	addr := stallProxy(t, node, 300*time.Millisecond, 0)
	c := stalledClient(t, addr, "PATCH /v2/app/blobs/uploads/u1 HTTP/1.1\r\nHost: team-a.example.com\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("x", 1000))
	finishes(t, done, "upload whose client went quiet")
	if sink.err == nil || sink.got >= 1000000 {
		t.Fatalf("Nexus read %d bytes, %v: want the upload cut short", sink.got, sink.err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("client got %s, want 400 (its own body failed) or the connection closed", resp.Status)
		}
	}
}

// A client that trickles its upload, a byte at a time with pauses well
// under --body-timeout, is cut too: it must keep the body moving, not only
// keep every read from waiting a whole --body-timeout, or it holds its
// Nexus connection (a Jetty thread) for as long as it likes.
func TestClientThatTricklesIsCut(t *testing.T) {
	sink := newUploadSink(t)
	node, done := sink.node, sink.done
	addr := stallProxy(t, node, 500*time.Millisecond, 0)
	c := stalledClient(t, addr, "PATCH /v2/app/blobs/uploads/u1 HTTP/1.1\r\nHost: team-a.example.com\r\nContent-Length: 1000000\r\n\r\n")
	trickleClient(t, c, 50*time.Millisecond)
	finishes(t, done, "upload trickled a byte at a time")
	if sink.got >= 1000000 {
		t.Fatalf("Nexus read the whole body: want the upload cut short")
	}
}

// stalledRefusals are requests nexmux refuses itself, never forwarded: a
// path that climbs out of /v2/, one outside the registry API, and a Host
// that another route serves (the connection is for team-a.example.com).
var stalledRefusals = []struct {
	name, head string
	status     int
}{
	{"bad path", "POST /v2/../app/blobs/uploads/ HTTP/1.1\r\nHost: team-a.example.com\r\n", http.StatusBadRequest},
	{"foreign path", "POST /service/rest/v1/status HTTP/1.1\r\nHost: team-a.example.com\r\n", http.StatusNotFound},
	{"wrong host", "PUT /v2/app/manifests/1 HTTP/1.1\r\nHost: team-b.example.com\r\n", http.StatusMisdirectedRequest},
}

// stalledBodies announce a small body and stop before its end.
var stalledBodies = []struct{ name, raw string }{
	{"content-length", "Content-Length: 100\r\n\r\nabc"},
	{"chunked, no chunk", "Transfer-Encoding: chunked\r\n\r\n"},
	{"chunked, a chunk and no end", "Transfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n"},
}

// readRefusal reads nexmux's JSON refusal from br and fails unless it is
// want, whole, and closes the connection.
func readRefusal(t *testing.T, br *bufio.Reader, want int) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v; want nexmux's %d", err, want)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s: body cut after %d bytes: %v", resp.Status, len(b), err)
	}
	if resp.StatusCode != want || resp.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(string(b), `{"errors":[`) || !resp.Close {
		t.Fatalf("got %s (%s) %q, close %v; want a JSON %d with the connection closed", resp.Status, resp.Header.Get("Content-Type"), b, resp.Close, want)
	}
}

// A request nexmux refuses itself is answered at once, however long
// --body-timeout is, when its client announced a small body (or a chunked
// one of unknown length) and stalls: net/http would read up to 256 KiB of
// an unread body before it sends a handler's answer, so the refusal
// waited for the client's body or for --body-timeout (and before that
// read had a deadline, never came).
func TestRefusalOfStalledBodyAnsweredAtOnce(t *testing.T) {
	const bodyTO, bound = 30 * time.Second, 5 * time.Second
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {})
	addr := stallProxy(t, node, bodyTO, 0)
	for _, rq := range stalledRefusals {
		for _, body := range stalledBodies {
			t.Run(rq.name+"/"+body.name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				c := stalledClient(t, addr, rq.head+body.raw)
				_ = c.SetReadDeadline(start.Add(bound))
				readRefusal(t, bufio.NewReader(c), rq.status)
				if d := time.Since(start); d >= bound {
					t.Fatalf("answered after %v (--body-timeout %v); want at once", d.Round(time.Millisecond), bodyTO)
				}
			})
		}
	}
}

// A client that sends its whole body before it reads gets the refusal
// whole: the rest of the body is read after the answer, not left unread
// in a socket whose close would then be a reset (which may take back the
// answer from the client's kernel, and ends its read with an error
// instead of the end of the stream).
func TestRefusalOfWholeBodyArrivesIntact(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {})
	addr := stallProxy(t, node, 30*time.Second, 0)
	body := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	chunked := fmt.Appendf(nil, "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	sized := fmt.Appendf(nil, "Content-Length: %d\r\n\r\n%s", len(body), body)
	for i := range 5 {
		for _, rq := range stalledRefusals {
			for _, framed := range [][]byte{sized, chunked} {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(append([]byte(rq.head), framed...)); err != nil {
					t.Fatalf("%d, %s: writing the request: %v", i, rq.name, err)
				}
				br := bufio.NewReader(c)
				readRefusal(t, br, rq.status)
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("%d, %s: after the answer: %v; want the connection closed cleanly (EOF)", i, rq.name, err)
				}
				c.Close()
			}
		}
	}
}

// A client that goes on stalling after its refusal loses its connection
// once --body-timeout has passed without its body: the answer comes at
// once, the rest of the body is waited for no longer than that.
func TestRefusalOfStalledBodyClosesAfterBodyTimeout(t *testing.T) {
	const bodyTO, slack = 3 * time.Second, 3 * time.Second
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {})
	addr := stallProxy(t, node, bodyTO, 0)
	for _, body := range stalledBodies {
		t.Run(body.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			c := stalledClient(t, addr, stalledRefusals[0].head+body.raw)
			_ = c.SetReadDeadline(start.Add(bodyTO + 2*slack))
			br := bufio.NewReader(c)
			readRefusal(t, br, stalledRefusals[0].status)
			answered := time.Since(start)
			if answered >= bodyTO {
				t.Fatalf("answered after %v: want before --body-timeout (%v)", answered.Round(time.Millisecond), bodyTO)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("%v after the answer: %v; want the connection closed", time.Since(start)-answered, err)
			}
			if d := time.Since(start) - answered; d >= bodyTO+slack {
				t.Fatalf("connection closed %v after the answer; want within --body-timeout (%v)", d.Round(time.Millisecond), bodyTO)
			}
		})
	}
}

// An upload cut for --body-timeout is answered and its connection closed
// then, not kept for another --body-timeout reading what is left.
func TestStalledUploadClosedWithItsAnswer(t *testing.T) {
	const bodyTO = 2 * time.Second
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	addr := stallProxy(t, node, bodyTO, 0)
	// Every wait for the client's body begins after its write: the cut
	// comes no sooner than bodyTO after this, and a connection read on
	// for another --body-timeout (before the answer or after it) closes
	// no sooner than twice that, however slow the machine.
	start := time.Now()
	c := stalledClient(t, addr, "PATCH /v2/app/blobs/uploads/u1 HTTP/1.1\r\nHost: team-a.example.com\r\nContent-Length: 1000\r\n\r\nabc")
	_ = c.SetReadDeadline(start.Add(5 * bodyTO))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the %s: %v, want the connection closed", resp.Status, err)
	}
	if d := time.Since(start); d >= 2*bodyTO {
		t.Fatalf("connection closed %v after the upload stalled (--body-timeout %v); want with the %s, not another --body-timeout later", d.Round(time.Millisecond), bodyTO, resp.Status)
	}
}

// Slow but moving clients are not cut: each write and read has its own
// deadline, not the whole transfer.
func TestSlowClientIsNotCut(t *testing.T) {
	const size = 16 << 20
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Write(make([]byte, size))
	})
	addr := stallProxy(t, node, time.Second, time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /v2/app/blobs/sha256:"+strings.Repeat("0", 64)+" HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 16 MiB in 256 KiB pieces every 50 ms: 3.2 s in all, well past the
	// 1 s timeout, but never a second without progress.
	var n int64
	buf := make([]byte, 256<<10)
	for n < size {
		m, err := io.ReadFull(resp.Body, buf[:min(len(buf), int(size-n))])
		n += int64(m)
		if err != nil {
			t.Fatalf("slow client cut after %d bytes: %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Once Nexus's body is read to its end, the Nexus connection's slot comes
// back, before the client has taken the last bytes.
func TestNexusSlotBackAtBodyEnd(t *testing.T) {
	spec, err := upstream.ParseSpec([]string{"http://127.0.0.1:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	up := NewUpstreams(spec, upstream.NewSet(spec, slog.New(slog.NewTextHandler(io.Discard, nil))), UpstreamOptions{MaxConns: 1})
	n := up.Set().Nodes()[0]
	wait := time.Duration(0)
	sl, ok := up.acquire(context.Background(), n.Host, netip.Addr{}, &wait)
	if !ok {
		t.Fatal("no slot")
	}
	n.Start()
	b := &doneBody{ReadCloser: io.NopCloser(strings.NewReader("manifest")), a: attempt{n: n, slot: sl}}
	if _, err := io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	wait = time.Second
	again, ok := up.acquire(ctx, n.Host, netip.Addr{}, &wait)
	if !ok {
		t.Fatal("slot still held after the body's end")
	}
	again.release()
	b.Close() // gives nothing back twice
	wait = 0
	if got, ok := up.acquire(context.Background(), n.Host, netip.Addr{}, &wait); !ok || got.p.taken != 1 {
		t.Fatalf("after Close: slot %v, %d held; want exactly this one", ok, got.p.taken)
	}
}

// --body-timeout bounds waiting for the client's body, not for Nexus's
// answer once the body is all in: a PUT whose Nexus takes longer than the
// timeout to commit, then fails, gets its error answer, not an empty
// reply as if the client had gone.
func TestBodyTimeoutEndsWithTheBody(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(2500 * time.Millisecond) // committing, well past --body-timeout
		panic(http.ErrAbortHandler)         // then the connection breaks
	})
	// A --body-timeout a loaded machine's pauses while the body goes
	// through do not reach.
	addr := stallProxy(t, node, time.Second, 0)
	body := strings.Repeat("x", 100<<10)
	c := stalledClient(t, addr, "PUT /v2/app/blobs/uploads/u1?digest=sha256:"+strings.Repeat("0", 64)+" HTTP/1.1\r\nHost: team-a.example.com\r\nContent-Length: "+fmt.Sprint(len(body))+"\r\n\r\n"+body)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a client still connected: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), `"errors"`) {
		t.Fatalf("got %s %q, want Nexus's failure as a JSON 502", resp.Status, b)
	}
}

// Over HTTP/2 a write deadline is a timer that resets the stream when it
// fires, write or no write: a pause of Nexus's own between two pieces of a
// response must not be charged to a client that reads everything at once.
func TestHTTP2NexusPauseIsNotCut(t *testing.T) {
	const sendTO = 300 * time.Millisecond
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(2<<10))
		_, _ = w.Write(make([]byte, 1<<10))
		http.NewResponseController(w).Flush()
		time.Sleep(4 * sendTO)
		_, _ = w.Write(make([]byte, 1<<10))
	})
	addr := stallProxy(t, node, 0, sendTO)
	tr := h2cTransport(t, nil)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/app/manifests/latest", nil)
	req.Host = "team-a.example.com"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("got %s, want HTTP/2", resp.Proto)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != 2<<10 {
		t.Fatalf("read %d bytes, err %v; want all %d: a pause of Nexus's cut the stream", n, err, 2<<10)
	}
}

// Over HTTP/2 what is still buffered when the handler returns is flushed
// under --send-timeout too: a small response to a client that keeps its
// window shut does not hold its stream (and a drain) for good.
func TestHTTP2ShutWindowSmallResponseEnds(t *testing.T) {
	const sendTO = 300 * time.Millisecond
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") {
			w.Header().Set("Content-Length", fmt.Sprint(3<<10))
			_, _ = w.Write(make([]byte, 3<<10))
		}
	})
	addr := stallProxy(t, node, 0, sendTO)
	tr := h2cTransport(t, &http.HTTP2Config{MaxReceiveBufferPerStream: 1})
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/app/manifests/latest", nil)
	req.Host = "team-a.example.com"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Reading would open the window: the reset must have come first. Ten
	// --send-timeouts, for a loaded machine's late timer and reset.
	time.Sleep(10 * sendTO)
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("read all %d bytes after the window stayed shut for 10 --send-timeouts: want the stream reset", len(b))
	}
}

// Over HTTP/2 a read deadline is a timer that fails the body when it
// fires, read or no read: while Nexus pauses between reads of an upload
// (its blob store busy), a client that has sent all it may must not be cut.
func TestHTTP2NexusPauseInUploadIsNotCut(t *testing.T) {
	// Long enough that a loaded machine's scheduling delays, while the
	// 16 MiB go through after the pause, are not the client stopping.
	const bodyTO = time.Second
	const size = 16 << 20
	got := make(chan int64, 1)
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		n, _ := io.CopyN(io.Discard, r.Body, 1<<10)
		time.Sleep(4 * bodyTO)
		m, _ := io.Copy(io.Discard, r.Body)
		got <- n + m
		w.WriteHeader(http.StatusAccepted)
	})
	addr := stallProxy(t, node, bodyTO, 0)
	tr := h2cTransport(t, nil)
	req, _ := http.NewRequest(http.MethodPatch, "http://"+addr+"/v2/app/blobs/uploads/u1", bytes.NewReader(make([]byte, size)))
	req.Host = "team-a.example.com"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err == nil {
		resp.Body.Close()
	}
	select {
	case n := <-got:
		if n != size {
			t.Fatalf("Nexus read %d of %d bytes (client: %v): a pause of Nexus's cut the upload", n, size, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Nexus never finished reading")
	}
}

// Over HTTP/2 too, a client that stops sending its upload is cut.
func TestHTTP2ClientThatStopsSendingIsCut(t *testing.T) {
	sink := newUploadSink(t)
	node, done := sink.node, sink.done
	addr := stallProxy(t, node, 300*time.Millisecond, 0)
	tr := h2cTransport(t, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write(make([]byte, 1000)) }()
	req, _ := http.NewRequest(http.MethodPatch, "http://"+addr+"/v2/app/blobs/uploads/u1", pr)
	req.Host = "team-a.example.com"
	req.ContentLength = 1000000
	go func() {
		if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	finishes(t, done, "HTTP/2 upload whose client went quiet")
	if sink.got >= 1000000 {
		t.Fatalf("Nexus read the whole body: want the upload cut short")
	}
}

// A client that pipelines requests and reads none of their small answers
// fills the socket's buffers; the next answer's write then blocks. Only
// large writes had a deadline, so that connection and its goroutine were
// held for good, past every timeout.
func TestPipeliningClientThatStopsReadingIsCut(t *testing.T) {
	const requests = 2000
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(make([]byte, 16<<10)) // a manifest: small, below batchMin
	})
	// A request cut by --send-timeout: its record has a reason.
	cutRec := make(chan Record, 1)
	addr, _ := haProxyConfig(t, io.Discard, 0, "team-a", Config{SendTimeout: 300 * time.Millisecond, Observe: func(_ *ConnInfo, _ *http.Request, rec Record) {
		if rec.Reason != "" {
			select {
			case cutRec <- rec:
			default:
			}
		}
	}}, "http://"+node.addr)
	// A small receive buffer, set before connecting: shrunk afterwards,
	// the window already offered would stall the reads below.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		req := "GET /v2/app/manifests/1 HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n"
		_, _ = io.WriteString(c, strings.Repeat(req, requests))
	}()
	// Reads nothing until a write was cut, however long a loaded machine
	// takes: reading any earlier would let the blocked write through.
	select {
	case <-cutRec:
	case <-time.After(time.Minute):
		t.Fatalf("no answer cut after %d of %d pipelined answers went unread for a minute (--send-timeout 300ms)", node.hits.Load(), requests)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, c)

	if err, ok := err.(net.Error); ok && err.Timeout() {
		t.Fatalf("connection still open after %d of %d pipelined answers: the stalled write was never cut", node.hits.Load(), requests)
	}
	if n := node.hits.Load(); n >= requests {
		t.Fatalf("all %d requests served: the client's buffers never filled", n)
	}
}

// A client that asked for "100 Continue", got it (Nexus read the body),
// then sent nothing is cut by --body-timeout and told so with a JSON 400.
// The forwarded 100 counted as the response's status, so the 400 was
// dropped as if the response had started, and net/http finished it as an
// empty 200 OK: a manifest PUT that never arrived looked like a success.
func TestStalledBodyAfter100ContinueAnswered400(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	addr := stallProxy(t, node, 300*time.Millisecond, 0)
	c := stalledClient(t, addr, "PUT /v2/app/manifests/1 HTTP/1.1\r\nHost: team-a.example.com\r\nContent-Length: 3000\r\nExpect: 100-continue\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	for err == nil && resp.StatusCode < 200 {
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"errors"`) {
		t.Fatalf("got %s %q, want the body's failure as a JSON 400", resp.Status, b)
	}
}

// Nexus may answer an upload before reading it (an expired token's 401),
// and the transport may still be reading the client's body when the
// handler returns. Over HTTP/2 the stream's deadlines are gone by then:
// clearing one from that read crashed the process.
func TestHTTP2UploadAnsweredEarlyDoesNotCrash(t *testing.T) {
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	addr := stallProxy(t, node, 300*time.Millisecond, 300*time.Millisecond)
	tr := h2cTransport(t, nil)
	for range 20 {
		req, _ := http.NewRequest(http.MethodPatch, "http://"+addr+"/v2/app/blobs/uploads/u1", bytes.NewReader(make([]byte, 8<<20)))
		req.Host = "team-a.example.com"
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			continue // the stream may be reset with the body unsent
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("got %s, want Nexus's 401", resp.Status)
		}
	}
}

// Over HTTP/2 a request without a body (every GET and HEAD) still has a
// Body: it was taken for one whose rest the client might never send, and
// the answer's last flush got --body-timeout on top of --send-timeout. An
// answer nexmux writes itself (a refusal) to a client that keeps its
// window shut held its stream that much longer.
func TestHTTP2ShutWindowRefusalEndsAtSendTimeout(t *testing.T) {
	const sendTO = 300 * time.Millisecond
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {})
	addr, _ := haProxyConfig(t, io.Discard, 0, "team-a", Config{BodyTimeout: time.Minute, SendTimeout: sendTO}, "http://"+node.addr)
	tr := h2cTransport(t, &http.HTTP2Config{MaxReceiveBufferPerStream: 1})
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/service/rest/v1/status", nil)
	req.Host = "team-a.example.com"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("got %s, want nexmux's own 404", resp.Status)
	}
	// Reading would open the window: the reset must have come first. Ten
	// --send-timeouts, for a loaded machine's late timer and reset.
	time.Sleep(10 * sendTO)
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("read all %d bytes after the window stayed shut for 10 --send-timeouts: want the stream reset", len(b))
	}
}

// informUpstream answers 201 after telling the client "100 Continue", as
// Nexus does to an upload sent with Expect: 100-continue.
type informUpstream struct{}

func (informUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if tr := httptrace.ContextClientTrace(r.Context()); tr != nil && tr.Got1xxResponse != nil {
		if err := tr.Got1xxResponse(http.StatusContinue, nil); err != nil {
			return nil, err
		}
	}
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusCreated, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// orderWriter records the order of a response's deadline and header
// calls.
type orderWriter struct {
	discardWriter
	events []string
}

func (w *orderWriter) SetWriteDeadline(time.Time) error {
	w.events = append(w.events, "deadline")
	return nil
}
func (w *orderWriter) SetReadDeadline(time.Time) error { return nil }
func (w *orderWriter) WriteHeader(code int) {
	w.events = append(w.events, fmt.Sprint(code))
	w.discardWriter.WriteHeader(code)
}

// Over HTTP/1 net/http writes a forwarded "100 Continue" straight to the
// socket, from the transport's goroutine reading Nexus's answer. To a
// pipelining client that has stopped reading, that write blocked with no
// deadline: Nexus's final answer was never read, and ReverseProxy waited
// for the blocked write for good, holding the handler and the connection.
func TestForwarded100ContinueWrittenUnderSendTimeout(t *testing.T) {
	tab, up := teamATable(t)
	p, err := New(Config{Upstreams: up, Transport: informUpstream{}, SendTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ci := &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com", TLS: true}
	const target = "/v2/app/blobs/uploads/u1"
	r, err := http.NewRequestWithContext(NewContext(context.Background(), ci), http.MethodPatch, "https://team-a.example.com"+target, strings.NewReader("layer"))
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI = target
	r.Header.Set("Expect", "100-continue")
	w := &orderWriter{discardWriter: discardWriter{h: http.Header{}}}
	p.ServeHTTP(w, r)
	if w.status != http.StatusContinue && w.status != http.StatusCreated {
		t.Fatalf("status %d", w.status)
	}
	i := slices.Index(w.events, "100")
	if i < 0 {
		t.Fatalf("the 100 Continue was not forwarded: %v", w.events)
	}
	if !slices.Contains(w.events[:i], "deadline") {
		t.Fatalf("100 Continue forwarded with no write deadline set before it: %v", w.events)
	}
}

// readOrder records when the client's body is first read.
type readOrder struct {
	io.Reader
	w *orderWriter
}

func (r *readOrder) Read(b []byte) (int, error) {
	r.w.events = append(r.w.events, "read")
	return r.Reader.Read(b)
}

func (r *readOrder) Close() error { return nil }

// Over HTTP/1 net/http writes its own "100 Continue" to the socket at the
// first read of a body the client sent with Expect: 100-continue, from the
// transport's goroutine sending the body to Nexus. To a pipelining client
// that had stopped reading, that write blocked with no deadline, and the
// upload with it, until Nexus gave up waiting for the body.
func TestAutomatic100ContinueWrittenUnderSendTimeout(t *testing.T) {
	tab, up := teamATable(t)
	p, err := New(Config{Upstreams: up, Transport: &memUpstream{}, SendTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ci := &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com", TLS: true}
	for _, expect := range []bool{true, false} {
		w := &orderWriter{discardWriter: discardWriter{h: http.Header{}}}
		r, err := http.NewRequestWithContext(NewContext(context.Background(), ci), http.MethodPatch, "https://team-a.example.com"+upload, &readOrder{Reader: strings.NewReader("layer"), w: w})
		if err != nil {
			t.Fatal(err)
		}
		r.RequestURI, r.ContentLength = upload, 5
		if expect {
			r.Header.Set("Expect", "100-continue")
		}
		p.ServeHTTP(w, r)
		if w.status != http.StatusAccepted {
			t.Fatalf("status %d", w.status)
		}
		i := slices.Index(w.events, "read")
		if i < 0 {
			t.Fatalf("the body was never read: %v", w.events)
		}
		if armed := slices.Contains(w.events[:i], "deadline"); armed != expect {
			t.Fatalf("Expect: 100-continue %v: write deadline before the body's first read %v, want %v: %v", expect, armed, expect, w.events)
		}
	}
}
