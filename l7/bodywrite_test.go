package l7

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
)

// fullRecord is the plaintext of a full TLS record.
const fullRecord = 16 << 10

// recordReader yields its data the way a body read from a client's TLS
// stream does: at most one full 16 KiB record per Read.
type recordReader struct {
	data []byte
	// pause, when set, is called before each Read after the first.
	pause func(read int)
	reads int
}

func (r *recordReader) Read(p []byte) (int, error) {
	if r.pause != nil && r.reads > 0 {
		r.pause(r.reads)
	}
	r.reads++
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), fullRecord)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// writeCounter counts the writes, and their bytes, that reach the socket.
type writeCounter struct {
	net.Conn
	writes, bytes, largest atomic.Int64
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	for l := w.largest.Load(); int64(len(p)) > l && !w.largest.CompareAndSwap(l, int64(len(p))); l = w.largest.Load() {
	}
	n, err := w.Conn.Write(p)
	w.bytes.Add(int64(n))
	return n, err
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// A body arriving a record at a time reaches Nexus intact in few large
// writes, and ReadFrom reports what it wrote.
func TestBodyBatchedIntoLargeWrites(t *testing.T) {
	const size = 8<<20 + 12345 // not a multiple of a record or a batch
	body := randomBytes(t, size)
	c, s := testnet.Pair(t)
	wc := &writeCounter{Conn: c}
	uc := &upstreamConn{Conn: wc}
	got := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		_, _ = io.Copy(h, s)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}()
	// As http.Transport does: the body behind a LimitedReader.
	n, err := uc.ReadFrom(io.LimitReader(&recordReader{data: body}, size))
	if err != nil || n != size {
		t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, size)
	}
	c.Close()
	if sum := <-got; sum != sha256.Sum256(body) {
		t.Fatal("Nexus received other bytes than the client sent")
	}
	unbatched := int64(size/fullRecord + 1)
	// Ideal is size/bodyBatchSize+1 (17 here); the 1 ms age rule may cut
	// a batch short on a busy machine, so the bound is loose, but far
	// below one write per record.
	if w := wc.writes.Load(); w > unbatched/4 {
		t.Fatalf("%d writes for %d records: the body was not batched", w, unbatched)
	}
	// Batches fill up (to the last whole read that fits) when the reads
	// come at once, as here; a busy machine's age cuts keep them well
	// above a record (one once measured exactly half a batch).
	if l := wc.largest.Load(); l < bodyBatchSize/4 || l > bodyBatchSize {
		t.Fatalf("largest write %d bytes, want a large part of a %d-byte batch", l, bodyBatchSize)
	}
}

// A chunked body read in small pieces (chunk boundaries) is batched too.
func TestBodySmallReadsBatched(t *testing.T) {
	const size, piece = 2 << 20, 3000
	body := randomBytes(t, size)
	c, s := testnet.Pair(t)
	wc := &writeCounter{Conn: c}
	uc := &upstreamConn{Conn: wc}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(s)
		got <- b
	}()
	n, err := uc.ReadFrom(&pieceReader{data: body, piece: piece})
	if err != nil || n != size {
		t.Fatalf("ReadFrom = %d, %v", n, err)
	}
	c.Close()
	if !bytes.Equal(<-got, body) {
		t.Fatal("Nexus received other bytes than the client sent")
	}
	if w, reads := wc.writes.Load(), int64(size/piece+1); w > reads/8 {
		t.Fatalf("%d writes for %d reads: small reads were not batched", w, reads)
	}
}

// aheadRecorder is a ReadAheader that remembers whether it is on.
type aheadRecorder struct {
	mu     sync.Mutex
	begins int
	on     bool
}

func (a *aheadRecorder) BeginReadAhead() { a.mu.Lock(); a.begins++; a.on = true; a.mu.Unlock() }
func (a *aheadRecorder) EndReadAhead()   { a.mu.Lock(); a.on = false; a.mu.Unlock() }
func (a *aheadRecorder) state() (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.begins, a.on
}

// waitOff waits for the read-ahead to end: the Transport may hand back
// Nexus's answer just before it lets go of the body.
func (a *aheadRecorder) waitOff(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, on := a.state(); on; _, on = a.state() {
		if time.Now().After(deadline) {
			t.Fatal("read-ahead still on after the Transport let go of the body")
		}
		time.Sleep(time.Millisecond)
	}
}

type pieceReader struct {
	data  []byte
	piece int
}

func (r *pieceReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.piece)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// Bytes gathered from a client never wait for more than one read: after
// a slow read, what was gathered before it goes out before the next read
// starts.
func TestBodyGatheredBytesDoNotWaitTwoReads(t *testing.T) {
	c, s := testnet.Pair(t)
	wc := &writeCounter{Conn: c}
	uc := &upstreamConn{Conn: wc}
	go func() { _, _ = io.Copy(io.Discard, s) }()
	src := &recordReader{data: randomBytes(t, 6*fullRecord)}
	src.pause = func(read int) {
		switch read {
		case 2:
			// Two full records gathered; this read is slow.
			time.Sleep(20 * time.Millisecond)
		case 3:
			// The slow read's return flushed what was gathered before it
			// (the record it brought may wait, if the first two had
			// already gone out: a preempted test goroutine ages them too).
			if b := wc.bytes.Load(); b < 2*fullRecord {
				t.Errorf("%d bytes written after a slow read, want at least %d", b, 2*fullRecord)
			}
		}
	}
	if _, err := uc.ReadFrom(src); err != nil {
		t.Fatal(err)
	}
}

// A client that breaks off mid-body: the error comes back, the bytes read
// before it were passed on, nothing hangs.
func TestBodyReadErrorReturned(t *testing.T) {
	c, s := testnet.Pair(t)
	uc := &upstreamConn{Conn: c}
	got := make(chan int, 1)
	go func() {
		n, _ := io.Copy(io.Discard, s)
		got <- int(n)
	}()
	broken := errors.New("client went away")
	r := io.MultiReader(&recordReader{data: randomBytes(t, 40000)}, errReader{broken})
	n, err := uc.ReadFrom(r)
	if !errors.Is(err, broken) || n != 40000 {
		t.Fatalf("ReadFrom = %d, %v; want 40000, %v", n, err, broken)
	}
	c.Close()
	if m := <-got; m != 40000 {
		t.Fatalf("Nexus received %d bytes, want 40000", m)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Nexus closing the connection mid-upload surfaces as a write error.
func TestBodyWriteErrorReturned(t *testing.T) {
	c, s := testnet.Pair(t)
	uc := &upstreamConn{Conn: c}
	s.(*net.TCPConn).SetLinger(0)
	s.Close()
	_, err := uc.ReadFrom(&recordReader{data: randomBytes(t, 64<<20)})
	if err == nil {
		t.Fatal("no error writing to a closed connection")
	}
}

// Uploads through the whole HTTP stage (Rewrite, httputil.ReverseProxy,
// the Transport nexmux builds) reach Nexus intact and in batched writes,
// whether the client sent a Content-Length or a chunked body (the docker
// CLI's PATCH), both read a TLS record at a time.
func TestUploadsBatchedThroughProxy(t *testing.T) {
	const size = 4 << 20
	body := randomBytes(t, size)
	sum := sha256.Sum256(body)
	ln := testnet.Listen(t)
	var chunked atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/early") {
			// Nexus refusing an upload after a first look at it.
			_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if len(r.TransferEncoding) > 0 {
			chunked.Add(1)
		}
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Bytes", strconv.FormatInt(n, 10))
		if !bytes.Equal(h.Sum(nil), sum[:]) {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	up, err := ParseUpstreams([]string{"http://" + ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []*writeCounter
	tr := newTransport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		wc := &writeCounter{Conn: c}
		mu.Lock()
		conns = append(conns, wc)
		mu.Unlock()
		return wc, nil
	}, nil)
	defer tr.CloseIdleConnections()
	p, err := New(Config{Upstreams: up, Transport: tr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	writes := func() (n int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			n += c.writes.Load()
		}
		return n
	}
	for _, c := range []struct {
		name   string
		length int64
		early  bool
		proto  int
	}{{"content-length", size, false, 1}, {"chunked", -1, false, 1}, {"answered-early", size, true, 1}, {"http2", size, false, 2}} {
		t.Run(c.name, func(t *testing.T) {
			before, chunkedBefore := writes(), chunked.Load()
			ra := &aheadRecorder{}
			ci := &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com", TLS: true, Reads: ra}
			path := "/v2/app/blobs/uploads/1234"
			if c.early {
				path += "/early"
			}
			r, err := http.NewRequestWithContext(NewContext(context.Background(), ci), http.MethodPatch, "https://team-a.example.com"+path, io.NopCloser(&recordReader{data: body}))
			if err != nil {
				t.Fatal(err)
			}
			r.RequestURI = path
			r.ContentLength = c.length
			r.ProtoMajor = c.proto
			w := &discardWriter{h: http.Header{}}
			p.ServeHTTP(w, r)
			if c.early {
				// The body was abandoned mid-way: the read-ahead ends
				// when the Transport lets go of it (Close), which may be
				// just after the response was passed on.
				if w.status != http.StatusUnauthorized {
					t.Fatalf("status %d", w.status)
				}
				ra.waitOff(t)
				return
			}
			if w.status != http.StatusAccepted || w.h.Get("X-Bytes") != strconv.Itoa(size) {
				t.Fatalf("Nexus saw status %d, %s bytes", w.status, w.h.Get("X-Bytes"))
			}
			if got := chunked.Load() - chunkedBefore; (c.length < 0) != (got == 1) {
				t.Fatalf("chunked requests at Nexus: %d", got)
			}
			// Unbatched is a write per record (and more, chunked). A
			// Content-Length batch is one write; a chunk is three (what
			// fills the Transport's 32 KiB buffer, the rest, the CRLF).
			limit := int64(size/fullRecord) / 4
			if c.length < 0 {
				limit = int64(size/fullRecord) / 2
			}
			if n := writes() - before; n > limit {
				t.Fatalf("%d writes to Nexus for %d records (limit %d): the body was not batched", n, size/fullRecord, limit)
			}
			// The client's connection was read ahead during the body (an
			// HTTP/1.x body only), and no longer is once the Transport is
			// done with it.
			if begins, _ := ra.state(); (begins == 0) != (c.proto == 2) {
				t.Fatalf("HTTP/%d: read-ahead begun %d times", c.proto, begins)
			}
			ra.waitOff(t)
		})
	}
}

// BenchmarkBodyToNexus sends an upload body, read a TLS record at a time,
// to a loopback peer that discards it: batched through upstreamConn, and
// a record per write as io.Copy alone does. Both ends run in this process,
// so ns/op is the CPU both sides spend (plus scheduling).
func BenchmarkBodyToNexus(b *testing.B) {
	const size = 16 << 20
	body := make([]byte, size)
	for name, batched := range map[string]bool{"batched": true, "record-per-write": false} {
		b.Run(name, func(b *testing.B) {
			ln := testnet.Listen(b)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						buf := make([]byte, 256<<10) // Nexus reads in large pieces
						for {
							if _, err := c.Read(buf); err != nil {
								c.Close()
								return
							}
						}
					}()
				}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var dst io.Writer = writerOnly{c}
			if batched {
				dst = &upstreamConn{Conn: c}
			}
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				if _, err := io.Copy(dst, io.LimitReader(&recordReader{data: body}, size)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// writerOnly hides ReadFrom, as io.Copy through http.Transport sees a
// plain connection.
type writerOnly struct{ io.Writer }
