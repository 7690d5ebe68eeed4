//go:build unix

package daemon_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/daemon"
	"github.com/nexmux/nexmux/internal/memtrim"
)

// h2PeerEnv makes the test binary BenchmarkHTTP2Upload's peer
// (TestH2UploadPeer): the HTTP/2 client and the Nexus-shaped backend, in
// a process of their own so that the benchmark's own CPU time is
// nexmux's.
const h2PeerEnv = "NEXMUX_BENCH_H2_PEER"

// TestH2UploadPeer is BenchmarkHTTP2Upload's peer when run by it. It
// serves a backend that discards and counts uploads, prints "backend
// ADDR", then for each line "upload ADDR BYTES" on stdin PATCHes BYTES
// through the nexmux at ADDR over HTTP/2, as containerd's push does (Go's
// HTTP/2 client: DATA frames as large as the server allows, up to 512
// KiB), and prints "done NANOSECONDS CPU-NANOSECONDS" (its own CPU time,
// client and backend, during the upload). Run as a test it does nothing.
func TestH2UploadPeer(t *testing.T) {
	if os.Getenv(h2PeerEnv) == "" {
		t.Skip("the HTTP/2 upload benchmark's client and backend")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(discardUpload), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Println("backend", ln.Addr())

	transports := map[string]*http.Transport{}
	in := bufio.NewScanner(os.Stdin)
	var id atomic.Int64
	patch := func(tr *http.Transport, n int64) {
		url := "https://bench.nexmux.test/v2/app/blobs/uploads/" + strconv.FormatInt(id.Add(1), 10)
		req, _ := http.NewRequest(http.MethodPatch, url, io.LimitReader(patternReader{}, n))
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("User-Agent", "containerd/v2.0.0")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Bench-Bytes") != strconv.FormatInt(n, 10) {
			t.Fatalf("PATCH: %s %d, backend counted %q of %d bytes", resp.Proto, resp.StatusCode, resp.Header.Get("X-Bench-Bytes"), n)
		}
	}
	var idle []*http.Transport
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 3 && f[0] == "upload":
			addr := f[1]
			n, _ := strconv.ParseInt(f[2], 10, 64)
			tr := transports[addr]
			if tr == nil {
				tr = h2Transport(addr)
				transports[addr] = tr
			}
			cpu0, start := cpuTime(), time.Now()
			patch(tr, n)
			fmt.Println("done", time.Since(start).Nanoseconds(), (cpuTime() - cpu0).Nanoseconds())
		case len(f) == 4 && f[0] == "idle":
			// idle ADDR CONNS BYTES: CONNS connections that each carried
			// one upload of BYTES, left open until "close".
			k, _ := strconv.Atoi(f[2])
			n, _ := strconv.ParseInt(f[3], 10, 64)
			for range k {
				tr := h2Transport(f[1])
				// A first request, as containerd's push starts with
				// (HEAD, POST), so that the server's SETTINGS have
				// come: until then the client sends 16 KiB frames for
				// the whole body.
				patch(tr, 1)
				patch(tr, n)
				idle = append(idle, tr)
			}
			fmt.Println("ready")
		case len(f) == 1 && f[0] == "close":
			for _, tr := range idle {
				tr.CloseIdleConnections()
			}
			idle = nil
			fmt.Println("closed")
		default:
			t.Fatalf("peer: %q", in.Text())
		}
	}
}

// discardUpload is the bench backend's upload (scripts/benchtool): the
// body read and discarded in large reads, the count in X-Bench-Bytes.
func discardUpload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPatch || !strings.Contains(r.URL.Path, "/blobs/uploads/") {
		http.NotFound(w, r)
		return
	}
	n, err := io.CopyBuffer(io.Discard, r.Body, make([]byte, 512<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Location", r.URL.Path)
	h.Set("Range", "0-"+strconv.FormatInt(n-1, 10))
	h.Set("X-Bench-Bytes", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusAccepted)
}

// h2Transport is a Go client as containerd's: net/http's Transport,
// HTTP/2 only, to the nexmux at addr.
func h2Transport(addr string) *http.Transport {
	p := new(http.Protocols)
	p.SetHTTP2(true)
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: "bench.nexmux.test"},
		Protocols:         p,
		ForceAttemptHTTP2: true,
	}
}

// patternReader is an endless non-zero body.
type patternReader struct{}

func (patternReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

// cpuTime is this process's user and system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the busy CPU time of every core from /proc/stat (all
// fields but idle and iowait), or 0 where there is none.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ
}

// h2FrameSizes are the server's SETTINGS_MAX_FRAME_SIZE under comparison:
// nexmux's (the protocol's default) and net/http's 1 MiB.
var h2FrameSizes = []struct {
	name string
	size int
}{{"16K", 16 << 10}, {"64K", 64 << 10}, {"256K", 256 << 10}, {"1M", 1 << 20}}

// BenchmarkHTTP2Upload pushes a blob through the daemon over HTTP/2 with
// the server offering each frame size: one op is one PATCH of
// BENCH_H2_UPLOAD_BYTES (default 512 MiB) from a Go client (the HTTP/2
// client of containerd's push) to a backend that discards it, both in a
// child process, so that cpu-s/GiB is the daemon's own CPU time per GiB
// pushed; peer-cpu-s/GiB is the child's (client and backend) and
// machine-cpu-s/GiB every core's busy time (/proc/stat), all three
// processes and the kernel's loopback work. The daemon holds the binary's
// 16 MiB heap floor. Variants run in the order given; compare them from
// interleaved runs of one variant each (docs/bench/h2-upload.md).
func BenchmarkHTTP2Upload(b *testing.B) {
	n := int64(512 << 20)
	if v, err := strconv.ParseInt(os.Getenv("BENCH_H2_UPLOAD_BYTES"), 10, 64); err == nil && v > 0 {
		n = v
	}
	if floor, ok := memtrim.NewHeapFloor(memtrim.FloorSize(os.Getenv)); ok {
		b.Cleanup(func() { runtime.KeepAlive(floor) })
	}
	backend, ask := startH2Peer(b)
	ca, err := certs.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	upload := func(b *testing.B, addr string) (wall, peer time.Duration) {
		line := ask(b, fmt.Sprintf("upload %s %d", addr, n))
		var w, c int64
		if _, err := fmt.Sscanf(line, "done %d %d", &w, &c); err != nil {
			b.Fatalf("peer: %q %v", line, err)
		}
		return time.Duration(w), time.Duration(c)
	}
	for _, fs := range h2FrameSizes {
		b.Run("frame="+fs.name, func(b *testing.B) {
			addr := nexmuxServerWith(b, "http://"+backend, ca, daemon.Options{H2MaxReadFrameSize: fs.size})
			upload(b, addr) // the handshake, the upstream connection, the buffers
			runtime.GC()
			b.SetBytes(n)
			var wall, peer, self, machine time.Duration
			b.ResetTimer()
			for b.Loop() {
				self0, machine0 := cpuTime(), machineCPU()
				w, p := upload(b, addr)
				self += cpuTime() - self0
				machine += machineCPU() - machine0
				wall += w
				peer += p
			}
			gib := float64(n) * float64(b.N) / (1 << 30)
			b.ReportMetric(self.Seconds()/gib, "cpu-s/GiB")
			b.ReportMetric(peer.Seconds()/gib, "peer-cpu-s/GiB")
			if machine > 0 {
				b.ReportMetric(machine.Seconds()/gib, "machine-cpu-s/GiB")
			}
			b.ReportMetric(gib*1024/wall.Seconds(), "MiB/s")
		})
	}
}

// startH2Peer starts TestH2UploadPeer in a child process and returns its
// backend's address and a function that sends it one command and returns
// its answer.
func startH2Peer(b *testing.B) (backend string, ask func(b *testing.B, cmd string) string) {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestH2UploadPeer$", "-test.count", "1")
	cmd.Env = append(os.Environ(), h2PeerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	backend, ok := strings.CutPrefix(strings.TrimSpace(line), "backend ")
	if err != nil || !ok {
		b.Fatalf("peer: %q %v", line, err)
	}
	return backend, func(b *testing.B, cmd string) string {
		if _, err := fmt.Fprintln(stdin, cmd); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatalf("peer: %q %v", line, err)
		}
		return strings.TrimSpace(line)
	}
}

// BenchmarkHTTP2IdleAfterUpload is what an idle HTTP/2 connection that
// carried a small request and then one 1 MiB upload from a Go client holds in the daemon, per
// frame size the server offers: the Go heap and goroutine stacks in use
// after two collections, per connection, as BenchmarkIdleConnMemory
// measures them, with the client in another process.
// BENCH_H2_IDLE_CONNS sets the count (default 200).
func BenchmarkHTTP2IdleAfterUpload(b *testing.B) {
	k := 200
	if v, err := strconv.Atoi(os.Getenv("BENCH_H2_IDLE_CONNS")); err == nil && v > 0 {
		k = v
	}
	backend, ask := startH2Peer(b)
	ca, err := certs.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	for _, fs := range h2FrameSizes {
		b.Run("frame="+fs.name, func(b *testing.B) {
			addr := nexmuxServerWith(b, "http://"+backend, ca, daemon.Options{H2MaxReadFrameSize: fs.size})
			for b.Loop() {
				before := settledMem()
				if line := ask(b, fmt.Sprintf("idle %s %d %d", addr, k, 1<<20)); line != "ready" {
					b.Fatalf("peer: %q", line)
				}
				time.Sleep(500 * time.Millisecond) // the servers' last writes
				after := settledMem()
				if line := ask(b, "close"); line != "closed" {
					b.Fatalf("peer: %q", line)
				}
				heap := (float64(after.HeapInuse) - float64(before.HeapInuse)) / float64(k)
				stack := (float64(after.StackInuse) - float64(before.StackInuse)) / float64(k)
				b.ReportMetric(heap, "heap-B/conn")
				b.ReportMetric(stack, "stack-B/conn")
				b.ReportMetric(heap+stack, "B/conn")
				time.Sleep(500 * time.Millisecond) // the daemon's side of the closes
			}
		})
	}
}
