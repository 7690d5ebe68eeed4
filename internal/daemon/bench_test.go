//go:build unix

package daemon_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
	"github.com/nexmux/nexmux/mux"
)

// benchManifest is the small request of the bench (scripts/benchtool
// backend): a schema 2 manifest of a few hundred bytes.
var benchManifest = []byte(`{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1469,
      "digest": "sha256:0b1c0d3647a14a368a0e1f2f3f4f5f6f0b1c0d3647a14a368a0e1f2f3f4f5f6f"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 3408729,
         "digest": "sha256:1f2f3f4f5f6f0b1c0d3647a14a368a0e1f2f3f4f5f6f0b1c0d3647a14a368a0e"
      }
   ]
}`)

// benchBackend answers manifest HEAD and GET like the bench backend.
func benchBackend(b *testing.B) string {
	sum := sha256.Sum256(benchManifest)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	size := strconv.Itoa(len(benchManifest))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			http.NotFound(w, r)
			return
		}
		hd := w.Header()
		hd["Content-Type"] = []string{"application/vnd.docker.distribution.manifest.v2+json"}
		hd["Docker-Content-Digest"] = []string{digest}
		hd["Docker-Distribution-Api-Version"] = []string{"registry/2.0"}
		hd["Content-Length"] = []string{size}
		if r.Method == http.MethodGet {
			_, _ = w.Write(benchManifest)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// floorServer is scripts/benchtool's floor: crypto/tls, net/http's server
// and httputil.ReverseProxy, nothing else.
func floorServer(b *testing.B, upstream string, cert tls.Certificate) string {
	u, _ := url.Parse(upstream)
	pool := sync.Pool{New: func() any { return make([]byte, 32<<10) }}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.URL.Path = "/repository/bench" + pr.In.URL.Path
			pr.Out.URL.RawPath = ""
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     20 * time.Second,
			DisableCompression:  true,
		},
		BufferPool: floorPool{&pool},
		ErrorLog:   log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type floorPool struct{ p *sync.Pool }

func (f floorPool) Get() []byte { return f.p.Get().([]byte) }

//lint:ignore SA6002 a slice, as the floor (httputil's own pool users) puts it
func (f floorPool) Put(v []byte) { f.p.Put(v) }

// nexmuxServer runs the daemon as `nexmux serve` does (access log through
// the batching LogWriter, metrics), with the bench's one route.
func nexmuxServer(b *testing.B, upstream string, ca *certs.CA) string {
	return nexmuxServerWith(b, upstream, ca, daemon.Options{})
}

// nexmuxServerWith is nexmuxServer with opts (its logger and access log
// are set here).
func nexmuxServerWith(b *testing.B, upstream string, ca *certs.CA, opts daemon.Options) string {
	dir := b.TempDir()
	pair, err := ca.Issue("*.nexmux.test")
	if err != nil {
		b.Fatal(err)
	}
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := pair.Write(cert, key); err != nil {
		b.Fatal(err)
	}
	cfg := config.Config{Listen: "127.0.0.1:0", Upstream: []string{upstream}, Cert: []string{cert}, Key: []string{key},
		Route: []string{"bench.nexmux.test=bench"}, IdleRelease: mux.DefaultIdleRelease}
	rt, err := cfg.Build()
	if err != nil {
		b.Fatal(err)
	}
	lw := daemon.NewLogWriter(io.Discard, daemon.AccessLogDelay)
	lg, access := daemon.NewLoggers(lw, rt.Config.LogFormat, rt.Config.LogLevel)
	opts.Logger, opts.AccessLog = lg, access
	d, err := daemon.New(rt, opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
		lw.Close()
	})
	return d.Addr("listen").String()
}

// benchTarget is a proxy under benchmark; start serves it and returns its
// address.
type benchTarget struct {
	name  string
	start func() string
}

// benchTargets returns the Go floor and the daemon in front of one
// in-process backend, and the CA their certificates come from.
func benchTargets(b *testing.B) (*certs.CA, []benchTarget) {
	upstream := benchBackend(b)
	ca, err := certs.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	floorCert, err := ca.IssueTLS("*.nexmux.test")
	if err != nil {
		b.Fatal(err)
	}
	return ca, []benchTarget{
		{"floor", func() string { return floorServer(b, upstream, floorCert) }},
		{"nexmux", func() string { return nexmuxServer(b, upstream, ca) }},
	}
}

// BenchmarkSmallRequest drives small requests end to end over loopback
// TLS: a keep-alive HTTP/1.1 client, the proxy, an in-process backend.
// "floor" is crypto/tls + net/http + httputil.ReverseProxy alone (as
// scripts/benchtool floor), "nexmux" the daemon; ns/op and allocs/op hold
// the client's and the backend's share too, the same on both sides, so
// the difference is nexmux's own work. -cpuprofile separates the parts.
func BenchmarkSmallRequest(b *testing.B) {
	ca, targets := benchTargets(b)
	for _, tg := range targets {
		addr := tg.start()
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			b.Run(tg.name+"/"+method, func(b *testing.B) {
				tr := &http.Transport{
					DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
						var d net.Dialer
						return d.DialContext(ctx, "tcp", addr)
					},
					TLSClientConfig:     &tls.Config{RootCAs: ca.Pool(), ServerName: "bench.nexmux.test", NextProtos: []string{"http/1.1"}},
					MaxIdleConnsPerHost: 1,
					DisableCompression:  true,
				}
				defer tr.CloseIdleConnections()
				req, err := http.NewRequest(method, "https://bench.nexmux.test/v2/app/manifests/latest", nil)
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("User-Agent", "docker/27.3.1 go/go1.22.7 git-commit/4cf5afa kernel/6.1 os/linux arch/amd64")
				req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
				req.Header.Set("Authorization", "Bearer DockerToken.0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f")
				do := func() {
					resp, err := tr.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
				do() // the handshake and the upstream connection
				b.ReportAllocs()
				for b.Loop() {
					do()
				}
			})
		}
	}
}

// idleClientEnv makes the test binary the idle-connection client of
// BenchmarkIdleConnMemory (TestIdleClient), in its own process so that
// the client's memory is not counted.
const idleClientEnv = "NEXMUX_BENCH_IDLE_CLIENT"

// TestIdleClient is BenchmarkIdleConnMemory's client when run by it: it
// opens the connections, sends one HEAD on each, says "ready" and holds
// them until its stdin closes. Run as a test it does nothing.
func TestIdleClient(t *testing.T) {
	spec := os.Getenv(idleClientEnv)
	if spec == "" {
		t.Skip("the idle-connection benchmark's client")
	}
	addr, nstr, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(nstr)
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "bench.nexmux.test", NextProtos: []string{"http/1.1"}, ClientSessionCache: nil}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "HEAD /v2/app/manifests/latest HTTP/1.1\r\nHost: bench.nexmux.test\r\nUser-Agent: docker/27.3.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD: %v %v", resp, err)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// BenchmarkIdleConnMemory is what an idle keep-alive TLS connection that
// served one HEAD holds in the server: the Go heap and goroutine stacks
// in use after two collections, per connection, for the floor and for
// nexmux, with the client in another process. BENCH_IDLE_CONNS sets the
// count (default 2000); BENCH_IDLE_HEAPPROFILE=FILE writes a heap profile
// while the connections are idle (with -test.memprofilerate 1).
func BenchmarkIdleConnMemory(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("BENCH_IDLE_CONNS")); err == nil && v > 0 {
		n = v
	}
	// Each side of a connection needs a descriptor (client and server are
	// separate processes, each under this limit).
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n)+200 {
		if lim.Cur < 300 {
			b.Skipf("RLIMIT_NOFILE %d is too small", lim.Cur)
		}
		n = int(lim.Cur) - 200
	}
	_, targets := benchTargets(b)
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			addr := tg.start()
			for b.Loop() {
				heap, stack := idleCost(b, addr, n)
				b.ReportMetric(heap, "heap-B/conn")
				b.ReportMetric(stack, "stack-B/conn")
				b.ReportMetric(heap+stack, "B/conn")
			}
		})
	}
}

func idleCost(b *testing.B, addr string, n int) (heap, stack float64) {
	before := settledMem()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestIdleClient$", "-test.count", "1")
	cmd.Env = append(os.Environ(), idleClientEnv+"="+addr+","+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		b.Fatalf("client: %q %v", line, err)
	}
	// The servers' last writes and state changes, and nexmux's release of
	// the idle connections.
	time.Sleep(mux.DefaultIdleRelease + 500*time.Millisecond)
	after := settledMem()
	if f := os.Getenv("BENCH_IDLE_HEAPPROFILE"); f != "" {
		w, err := os.Create(f + "." + strings.ReplaceAll(b.Name(), "/", "-"))
		if err != nil {
			b.Fatal(err)
		}
		_ = pprof.Lookup("heap").WriteTo(w, 0)
		w.Close()
	}
	return float64(after.HeapInuse-before.HeapInuse) / float64(n), float64(after.StackInuse-before.StackInuse) / float64(n)
}

func settledMem() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}
