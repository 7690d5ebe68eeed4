//go:build unix

package l7

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// BenchmarkUpstreamNodes is the bench's node-count row in process: HEAD
// manifest requests through the whole HTTP stage and a real Transport to
// 1 or 3 loopback nodes (one backend process serving every node's port, as
// BENCH_NODE_PROCS=1). Compare CPU profiles of the two to see what several
// nodes cost nexmux per request.
func BenchmarkUpstreamNodes(b *testing.B) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Docker-Distribution-Api-Version"] = []string{"registry/2.0"}
		h["Content-Type"] = []string{"application/vnd.docker.distribution.manifest.v2+json"}
		h["Docker-Content-Digest"] = []string{testDigest}
		h["Content-Length"] = []string{"528"}
	})
	tab, err := route.Build(route.Spec{Routes: []string{"team-a.example.com=team-a"}})
	if err != nil {
		b.Fatal(err)
	}
	ci := &ConnInfo{Table: tab, Route: tab.LookupHost("team-a.example.com"), ServerName: "team-a.example.com", TLS: true,
		Client: netip.MustParseAddrPort("192.0.2.1:50000")}
	ctx := NewContext(context.Background(), ci)
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			var urls []string
			for range nodes {
				ln := testnet.Listen(b)
				srv := &http.Server{Handler: backend}
				go srv.Serve(ln)
				b.Cleanup(func() { srv.Close() })
				urls = append(urls, "http://"+ln.Addr().String())
			}
			spec, err := upstream.ParseSpec(urls, nil)
			if err != nil {
				b.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			up := NewUpstreams(spec, upstream.NewSet(spec, log), UpstreamOptions{})
			tr := NewTransport()
			b.Cleanup(tr.CloseIdleConnections)
			p, err := New(Config{Upstreams: up, Transport: tr, Logger: log})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				base, _ := http.NewRequestWithContext(ctx, http.MethodHead, "https://team-a.example.com/v2/app/manifests/latest", nil)
				base.RequestURI = "/v2/app/manifests/latest"
				base.RemoteAddr = "192.0.2.1:50000"
				base.Header.Set("Authorization", "Bearer DockerToken.0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f")
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					r := *base
					clear(w.h)
					w.status, w.n = 0, 0
					p.ServeHTTP(w, &r)
					if w.status != http.StatusOK {
						b.Fatalf("status %d", w.status)
					}
				}
			})
			// Process CPU (nexmux and the in-process nodes) per request:
			// less at the mercy of other load than ns/op.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
