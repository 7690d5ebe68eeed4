package l7

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/route"
)

type countBatcher struct{ begin, end int }

func (c *countBatcher) BeginBatch() { c.begin++ }
func (c *countBatcher) EndBatch() error {
	c.end++
	return nil
}

// teamATable routes team-a.example.com to repository team-a of one Nexus
// at http://nexus:8081, for tests that call the Proxy directly.
func teamATable(t *testing.T) (*route.Table, *Upstreams) {
	t.Helper()
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	up, err := ParseUpstreams([]string{"http://nexus:8081"})
	if err != nil {
		t.Fatal(err)
	}
	return tab, up
}

// Large HTTP/1.x response writes are batched below TLS; small ones and
// HTTP/2 never are, and every batch that begins ends.
func TestResponseWritesBatched(t *testing.T) {
	tab, up := teamATable(t)
	blob := bytes.Repeat([]byte("n"), 1<<20)
	p, err := New(Config{Upstreams: up, Transport: &memUpstream{blob: blob}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, method, path string
		proto              int
		batched            bool
	}{
		{"blob over HTTP/1.1", http.MethodGet, "/v2/app/blobs/" + testDigest, 1, true},
		{"manifest HEAD", http.MethodHead, "/v2/app/manifests/latest", 1, false},
		{"blob over HTTP/2", http.MethodGet, "/v2/app/blobs/" + testDigest, 2, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cb := &countBatcher{}
			ci := &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com", TLS: true, Writes: cb}
			r, err := http.NewRequestWithContext(NewContext(context.Background(), ci), c.method, "https://team-a.example.com"+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			r.RequestURI = c.path
			r.ProtoMajor = c.proto
			w := &discardWriter{h: http.Header{}}
			p.ServeHTTP(w, r)
			if w.status != http.StatusOK {
				t.Fatalf("status %d", w.status)
			}
			if c.batched && (cb.begin == 0 || w.n != int64(len(blob))) || !c.batched && cb.begin != 0 {
				t.Errorf("%d batches for %d bytes", cb.begin, w.n)
			}
			if cb.begin != cb.end {
				t.Errorf("%d batches begun, %d ended", cb.begin, cb.end)
			}
		})
	}
}

// deadlineWriter is an HTTP/2 response writer that counts its write
// deadline calls: each is a message to the connection's serve goroutine,
// and each one set a closure and a timer allocated.
type deadlineWriter struct {
	discardWriter
	sets, flushes int
}

func (w *deadlineWriter) SetWriteDeadline(time.Time) error { w.sets++; return nil }
func (w *deadlineWriter) SetReadDeadline(time.Time) error  { return nil }
func (w *deadlineWriter) Flush()                           { w.flushes++ }

// A small HTTP/2 answer of known length costs one deadline around its
// write and one for what net/http flushes once the handler returns. A
// second flush under a deadline of its own, left over from a merge, doubled
// the serve goroutine's wake-ups per request and sent an extra empty DATA
// frame. Over HTTP/1 the write's deadline covers what net/http flushes
// after: one call, not a second at the handler's end.
func TestHTTP2SmallAnswerDeadlineCalls(t *testing.T) {
	tab, up := teamATable(t)
	p, err := New(Config{Upstreams: up, Transport: &memUpstream{blob: make([]byte, 528)}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ proto, sets int }{{2, 3}, {1, 1}} {
		ci := &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com", TLS: true}
		r, err := http.NewRequestWithContext(NewContext(context.Background(), ci), http.MethodGet, "https://team-a.example.com/v2/app/manifests/latest", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.RequestURI, r.ProtoMajor = "/v2/app/manifests/latest", tc.proto
		if tc.proto == 2 {
			r.Body = io.NopCloser(strings.NewReader("")) // as HTTP/2 gives a GET
		}
		w := &deadlineWriter{discardWriter: discardWriter{h: http.Header{}}}
		p.ServeHTTP(w, r)
		if w.status != http.StatusOK || w.n != 528 {
			t.Fatalf("HTTP/%d: status %d, %d bytes", tc.proto, w.status, w.n)
		}
		if w.sets > tc.sets || w.flushes > 0 {
			t.Errorf("HTTP/%d: %d write deadline calls and %d flushes for one small answer, want %d and none", tc.proto, w.sets, w.flushes, tc.sets)
		}
	}
}

// Over HTTP/2 each write sets and clears the stream's write deadline; the
// wrapper itself allocates nothing per write for it (a closure per write
// did, on every small answer).
func TestHTTP2WriteDeadlineAllocatesNothing(t *testing.T) {
	w := &deadlineWriter{discardWriter: discardWriter{h: http.Header{}}}
	cw := &batchingWriter{ResponseWriter: w, deadline: w, timeout: time.Minute, timeEvery: true}
	b := make([]byte, 528)
	if n := testing.AllocsPerRun(100, func() { _, _ = cw.Write(b); cw.Flush() }); n != 0 {
		t.Errorf("%v allocations per write and flush, want none", n)
	}
}
