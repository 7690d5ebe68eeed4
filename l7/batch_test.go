package l7

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/nexmux/nexmux/route"
)

type countBatcher struct{ begin, end int }

func (c *countBatcher) BeginBatch() { c.begin++ }
func (c *countBatcher) EndBatch() error {
	c.end++
	return nil
}

// Large HTTP/1.x response writes are batched below TLS; small ones and
// HTTP/2 never are, and every batch that begins ends.
func TestResponseWritesBatched(t *testing.T) {
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	up, err := ParseUpstreams([]string{"http://nexus:8081"})
	if err != nil {
		t.Fatal(err)
	}
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
