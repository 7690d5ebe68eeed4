package l7

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/upstream"
)

// jettyBlobNode serves blob, and single ranges of it, with Jetty's write
// idle timeout (idle, fixtures.JettyWriter); cuts counts the responses it
// gave up, ranged the ranged requests.
func jettyBlobNode(blob []byte, idle time.Duration, cuts, ranged *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		from, to := 0, len(blob)-1
		if rg := r.Header.Get("Range"); rg != "" {
			ranged.Add(1)
			if _, err := fmt.Sscanf(rg, "bytes=%d-%d", &from, &to); err != nil || from > to || to >= len(blob) {
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(blob)))
			w.Header().Set("Content-Length", strconv.Itoa(to-from+1))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		}
		if _, err := fixtures.JettyWriter(w, idle).Write(blob[from : to+1]); err != nil {
			cuts.Add(1)
			panic(http.ErrAbortHandler)
		}
	}
}

// pacedBlob is a blob larger than the buffers between a node and a
// client on loopback, and its digest.
func pacedBlob(size int) ([]byte, [32]byte, string) {
	blob := make([]byte, size)
	for i := range blob {
		blob[i] = byte(i*7 + i>>13)
	}
	sum := sha256.Sum256(blob)
	return blob, sum, "sha256:" + hex.EncodeToString(sum[:])
}

// pull GETs the blob through nexmux at addr on a connection with a small
// receive buffer, reading as fast as it can but for a stop of pause at
// each of stops, in turn, once it holds true of the bytes read so far; it
// returns the body.
func pull(t *testing.T, addr, digest string, pause time.Duration, stops ...func(got int) bool) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(c, "GET /v2/app/blobs/%s HTTP/1.1\r\nHost: team-a.example.com\r\nConnection: close\r\n\r\n", digest)
	var got []byte
	buf := make([]byte, 16<<10)
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		k, err := c.Read(buf)
		got = append(got, buf[:k]...)
		if len(stops) > 0 && stops[0](len(got)) {
			time.Sleep(pause)
			stops = stops[1:]
		}
		if err != nil {
			break
		}
	}
	_, body, ok := bytes.Cut(got, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no answer: %q", got)
	}
	return body
}

// holding is a stop of pull's once it holds n bytes.
func holding(n int) func(int) bool { return func(got int) bool { return got >= n } }

// resumed is a stop of pull's once the node has been asked for a range:
// a stop then breaks the resume's response (one at a fixed count could
// come while the first response's buffered bytes still flow).
func resumed(ranged *atomic.Int64) func(int) bool {
	return func(int) bool { return ranged.Load() > 0 }
}

// A client that stops taking a layer larger than the buffers between it
// and a single node for longer than the node's blocked write waits
// (Jetty's idle timeout, here 3 s): the node cuts its response while
// nexmux is still passing on what it read, which is no fault of the
// node's, and the download goes on from the same node where it broke,
// intact, as often as it breaks so.
func TestPacedDownloadResumesOnTheSameNode(t *testing.T) {
	t.Parallel()
	blob, sum, digest := pacedBlob(40 << 20)
	var cuts, ranged atomic.Int64
	// A 3 s write idle timeout and 6 s stops: a stall of a loaded
	// machine's own (over 1 s, seen once in a shuffled -race run) would
	// otherwise cut the node's write a third time, unplanned, and judged
	// not paced, end the download.
	n := startNode(t, jettyBlobNode(blob, 3*time.Second, &cuts, &ranged))
	addr, up := haProxy(t, io.Discard, 0, n)
	body := pull(t, addr, digest, 6*time.Second, holding(1<<20), resumed(&ranged))
	if len(body) != len(blob) {
		t.Fatalf("after %d cut(s) of the node's writes, the client got %d of %d body bytes (%d ranged requests)", cuts.Load(), len(body), len(blob), ranged.Load())
	}
	if cuts.Load() < 2 {
		t.Fatalf("the node cut %d write(s), not 2: the test did not test", cuts.Load())
	}
	if sha256.Sum256(body) != sum {
		t.Fatal("the body is not the blob")
	}
	// Each paced break's resume is counted, as paced too.
	if all, paced := resumeCounts(t, up.Set()); paced != float64(cuts.Load()) || all != paced {
		t.Fatalf("nexmux_upstream_resumes_total %v, nexmux_upstream_paced_resumes_total %v after %d paced break(s)", all, paced, cuts.Load())
	}
}

// resumeCounts reads set's nexmux_upstream_resumes_total and
// nexmux_upstream_paced_resumes_total.
func resumeCounts(t *testing.T, set *upstream.Set) (all, paced float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(set)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, mf := range mfs {
		switch mf.GetName() {
		case "nexmux_upstream_resumes_total":
			all = mf.GetMetric()[0].GetCounter().GetValue()
			found++
		case "nexmux_upstream_paced_resumes_total":
			paced = mf.GetMetric()[0].GetCounter().GetValue()
			found++
		}
	}
	if found != 2 {
		t.Fatalf("%d of the two resume counters gathered", found)
	}
	return all, paced
}

// pacedIdle is the write idle timeout of the nodes of the paced tests
// that pull a whole blob through cuts: long enough that a loaded
// machine's own stall does not cut a write unplanned, which is judged not
// paced and ends the download. The client stops twice as long.
const pacedIdle = 3 * time.Second

// With several nodes, a paced break resumes on the node that broke (its
// cache holds the blob, and it is healthy), is not held against it, and
// when that node cannot resume, another does.
func TestPacedBreakWithSeveralNodes(t *testing.T) {
	t.Parallel()
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("first refuses ranges %v", refuse), func(t *testing.T) {
			blob, sum, digest := pacedBlob(24 << 20)
			var cuts, ranged [2]atomic.Int64
			var nodes [2]*haNode
			for i := range nodes {
				h := jettyBlobNode(blob, pacedIdle, &cuts[i], &ranged[i])
				nodes[i] = startNode(t, func(w http.ResponseWriter, r *http.Request) {
					if refuse && r.Header.Get("Range") != "" {
						ranged[i].Add(1)
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					h(w, r)
				})
			}
			addr, up := haProxy(t, io.Discard, 0, nodes[0], nodes[1])
			first := 0
			if ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest); ns[0].Host == nodes[1].addr {
				first = 1
			}
			if refuse {
				nodes[1-first].h.Store(new(http.HandlerFunc(jettyBlobNode(blob, pacedIdle, &cuts[1-first], &ranged[1-first]))))
			}
			// The client stops for twice the nodes' idle timeout.
			body := pull(t, addr, digest, 2*pacedIdle, holding(1<<20))
			if cuts[first].Load() == 0 {
				t.Fatalf("the first node never cut a write: the test did not test (%d body bytes)", len(body))
			}
			if len(body) != len(blob) || sha256.Sum256(body) != sum {
				t.Fatalf("%d of %d body bytes (intact: %v); ranged requests %d on the first node, %d on the other", len(body), len(blob), sha256.Sum256(body) == sum, ranged[first].Load(), ranged[1-first].Load())
			}
			if ranged[first].Load() == 0 {
				t.Fatalf("the paced break was not resumed on the node that broke (ranged requests: %d there, %d on the other)", ranged[first].Load(), ranged[1-first].Load())
			}
			if !refuse && ranged[1-first].Load() != 0 {
				t.Errorf("the other node was asked for %d ranges", ranged[1-first].Load())
			}
			if refuse && ranged[1-first].Load() == 0 {
				t.Errorf("the first node refused to resume, and the other was not asked")
			}
			for _, ni := range up.Set().Table() {
				if strings.Contains(ni.LastError, "blob body broke") {
					t.Errorf("the paced break was held against %s: %s", ni.Node, ni.LastError)
				}
			}
		})
	}
}

// A break after nexmux waited on the node most of the time (a node that
// sends slowly, then breaks) is the node's: it is not asked again.
func TestSlowNodeBreakIsNotPaced(t *testing.T) {
	t.Parallel()
	blob, _, digest := pacedBlob(4 << 20)
	var ranged atomic.Int64
	n := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		// 64 KiB every 100 ms for 1.5 s, then the connection breaks.
		for i := range 15 {
			w.Write(blob[i<<16 : (i+1)<<16])
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
		panic(http.ErrAbortHandler)
	})
	addr, _ := haProxy(t, io.Discard, 0, n)
	body := pull(t, addr, digest, 0)
	if len(body) != 15<<16 || ranged.Load() != 0 {
		t.Fatalf("got %d body bytes (want the %d sent before the break) and asked the node again %d time(s)", len(body), 15<<16, ranged.Load())
	}
}

// With --upstream-max-conns at 1 or 2, the broken response's own place
// on the node is all the client may hold there: the same node's resume
// must not wait for it (with one node, nothing else resumes), and each
// place and in-flight count comes back once, at a second break too.
func TestPacedResumeWithFewPlaces(t *testing.T) {
	t.Parallel()
	for _, maxConns := range []int{1, 2} {
		t.Run(fmt.Sprintf("max %d", maxConns), func(t *testing.T) {
			t.Parallel()
			blob, sum, digest := pacedBlob(40 << 20)
			var cuts, ranged atomic.Int64
			n := startNode(t, jettyBlobNode(blob, pacedIdle, &cuts, &ranged))
			addr, up := haProxy(t, io.Discard, maxConns, n)
			// Two stops: the second break is of a resume's response.
			body := pull(t, addr, digest, 2*pacedIdle, holding(1<<20), resumed(&ranged))
			if cuts.Load() < 2 {
				t.Fatalf("the node cut %d write(s), not 2: the test did not test (%d body bytes)", cuts.Load(), len(body))
			}
			if len(body) != len(blob) || sha256.Sum256(body) != sum {
				t.Fatalf("after %d cut(s), the client got %d of %d body bytes (%d ranged requests)", cuts.Load(), len(body), len(blob), ranged.Load())
			}
			// Each response on the node gave its place and its in-flight
			// count back once: none leaked, none given back twice.
			p, _ := up.pools.m.Load(n.addr)
			node := up.Set().Nodes()[0]
			last := ""
			waitUntil(t, "every place and in-flight count back", func() bool {
				p.mu.Lock()
				defer p.mu.Unlock()
				if p.taken == 0 && len(p.held) == 0 && node.InFlight() == 0 {
					return true
				}
				if now := fmt.Sprintf("places taken %d, held %v, in flight %d", p.taken, p.held, node.InFlight()); now != last {
					t.Log(now)
					last = now
				}
				return false
			})
		})
	}
}

// An HTTP/2 client that resets its stream while a paced break's resume
// waits on the same node ends that request, and gives back every place.
func TestH2ResetDuringPacedResumeOnTheSameNode(t *testing.T) {
	t.Parallel()
	blob, _, digest := pacedBlob(32 << 20)
	var cuts, ranged atomic.Int64
	jetty := jettyBlobNode(blob, time.Second, &cuts, &ranged)
	asked, reset, gone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	n := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			jetty(w, r)
			return
		}
		heldRange(w, r, blob, asked, reset, gone)
	})
	addr, up := haProxy(t, io.Discard, 1, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := h2cTransport(t, nil).RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("%s: want HTTP/2", resp.Proto)
	}
	// Read a little, then stop past the node's idle timeout, then read
	// on until the resume is asked for.
	buf := make([]byte, 64<<10)
	io.ReadFull(resp.Body, buf)
	time.Sleep(2 * time.Second)
	go io.Copy(io.Discard, resp.Body)
	select {
	case <-asked:
	case <-time.After(20 * time.Second):
		t.Fatalf("the paced break was not resumed on the node (%d cuts)", cuts.Load())
	}
	cancel()
	time.Sleep(200 * time.Millisecond)
	close(reset)
	endsWithin10s(t, gone, "the resumed Nexus request of a stream reset during a paced resume is still open")
	p, _ := up.pools.m.Load(n.addr)
	node := up.Set().Nodes()[0]
	waitUntil(t, "every place and in-flight count back", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.taken == 0 && len(p.held) == 0 && node.InFlight() == 0
	})
}
