package h1rt

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRoundTrip compares this transport with net/http's on a small
// manifest GET over loopback (allocations are the noise-free part).
func BenchmarkRoundTrip(b *testing.B) {
	manifest := strings.Repeat("m", 250)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		io.WriteString(w, manifest)
	}))
	defer srv.Close()
	dial := (&net.Dialer{}).DialContext
	for _, c := range []struct {
		name string
		rt   interface {
			http.RoundTripper
			CloseIdleConnections()
		}
	}{
		{"std", &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 256, IdleConnTimeout: 20 * time.Second,
			ResponseHeaderTimeout: 300 * time.Second, DisableCompression: true, WriteBufferSize: 32 << 10, ReadBufferSize: 32 << 10}},
		{"sync", New(Options{Dial: dial, ResponseHeaderTimeout: 300 * time.Second})},
	} {
		b.Run(c.name, func(b *testing.B) {
			defer c.rt.CloseIdleConnections()
			b.ReportAllocs()
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			defer func() {
				// The process's CPU (client, transport and server, with the
				// kernel's share): less sensitive to a shared box than ns/op.
				syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
				cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			}()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/x/manifests/latest", nil)
					resp, err := c.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
