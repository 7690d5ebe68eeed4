package l7

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strconv"
	"testing"

	"github.com/nexmux/nexmux/route"
)

// memUpstream is Nexus in memory: it drains and counts request bodies and
// answers from canned responses, so a benchmark measures nexmux's HTTP
// stage (admission, path checks, rewriting, httputil.ReverseProxy, the body
// copies) and not a network.
type memUpstream struct {
	blob []byte
}

func (m *memUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	// The hooks http.Transport calls on every request, here on a pooled
	// connection.
	trace := httptrace.ContextClientTrace(r.Context())
	if trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{Reused: true, WasIdle: true})
	}
	var n int64
	if r.Body != nil {
		n, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	if trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{})
	}
	if trace != nil && trace.GotFirstResponseByte != nil {
		trace.GotFirstResponseByte()
	}
	h := http.Header{"Docker-Distribution-Api-Version": {"registry/2.0"}}
	resp := &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Request: r, Body: http.NoBody}
	switch r.Method {
	case http.MethodHead:
		h["Content-Type"] = []string{"application/vnd.docker.distribution.manifest.v2+json"}
		h["Docker-Content-Digest"] = []string{testDigest}
		h["Content-Length"] = []string{"528"}
		resp.ContentLength = 528
	case http.MethodGet:
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{strconv.Itoa(len(m.blob))}
		resp.ContentLength = int64(len(m.blob))
		resp.Body = io.NopCloser(bytes.NewReader(m.blob))
	case http.MethodPatch:
		resp.StatusCode = http.StatusAccepted
		h["Location"] = []string{"/repository/team-a-hosted" + upload}
		h["Range"] = []string{"0-" + strconv.FormatInt(n-1, 10)}
		h["Content-Length"] = []string{"0"}
	}
	return resp, nil
}

// discardWriter is the client side: it keeps nothing but the status.
type discardWriter struct {
	h      http.Header
	status int
	n      int64
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += int64(len(p))
	return len(p), nil
}

// BenchmarkServeHTTP is the whole HTTP stage per request against an
// in-memory upstream: HEAD of a manifest (what dominates a pull of cached
// layers), a 1 MiB blob GET and a 1 MiB PATCH upload whose Location is
// rewritten. Allocations here are per request.
func BenchmarkServeHTTP(b *testing.B) {
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=pull:team-a,push:team-a-hosted"}})
	if err != nil {
		b.Fatal(err)
	}
	up, err := ParseUpstreams([]string{"http://nexus:8081"})
	if err != nil {
		b.Fatal(err)
	}
	blob := bytes.Repeat([]byte("nexmux"), (1<<20)/6+1)[:1<<20]
	p, err := New(Config{Upstreams: up, Transport: &memUpstream{blob: blob}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ci := &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com", TLS: true,
		Client: netip.MustParseAddrPort("192.0.2.1:50000")}
	ctx := NewContext(context.Background(), ci)
	for _, c := range []struct {
		name, method, target string
		body                 []byte
		want                 int
	}{
		{"head-manifest", http.MethodHead, "/v2/app/manifests/latest", nil, http.StatusOK},
		{"get-blob-1MiB", http.MethodGet, "/v2/app/blobs/" + testDigest, nil, http.StatusOK},
		{"patch-upload-1MiB", http.MethodPatch, upload, blob, http.StatusAccepted},
	} {
		b.Run(c.name, func(b *testing.B) {
			base, err := http.NewRequestWithContext(ctx, c.method, "https://team-a.example.com"+c.target, nil)
			if err != nil {
				b.Fatal(err)
			}
			base.RequestURI = c.target
			base.RemoteAddr = "192.0.2.1:50000"
			base.Header.Set("User-Agent", "docker/27.3.1 go/go1.22.7 git-commit/4cf5afa kernel/6.1 os/linux arch/amd64")
			base.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
			base.Header.Set("Authorization", "Bearer DockerToken.0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f")
			rd := bytes.NewReader(c.body)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(c.body) + len(blob)*btoi(c.method == http.MethodGet)))
			b.ReportAllocs()
			for b.Loop() {
				r := *base
				if c.body != nil {
					rd.Reset(c.body)
					r.Body, r.ContentLength = io.NopCloser(rd), int64(len(c.body))
				}
				clear(w.h)
				w.status, w.n = 0, 0
				p.ServeHTTP(w, &r)
				if w.status != c.want {
					b.Fatalf("status %d, want %d", w.status, c.want)
				}
			}
		})
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}
