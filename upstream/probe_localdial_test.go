package upstream

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A probe whose dial fails on nexmux's own host (out of descriptors, local
// ports) is no verdict: the node keeps its state, writable included (a
// failed status/writable probe would otherwise make it read-only and refuse
// every push). A refused probe still marks the node down.
func TestProbeLocalDialFailureIsNoVerdict(t *testing.T) {
	s := mustSet(t, statusServer(t, func(w http.ResponseWriter, r *http.Request) {}))
	var log bytes.Buffer
	s.SetLogger(slog.New(slog.NewTextHandler(&log, nil)))
	n := s.Nodes()[0]

	var fail atomic.Pointer[syscall.Errno]
	var dials atomic.Int64
	d := &net.Dialer{Timeout: time.Second}
	ctx := context.Background()
	p := &prober{ctx: ctx, s: s, interval: time.Hour, client: &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			if e := fail.Load(); e != nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", *e)}
			}
			return d.DialContext(ctx, network, addr)
		},
	}}}
	for range agree {
		p.round(ctx)
	}
	if st := n.State(); st != Writable {
		t.Fatalf("state %v after healthy probes, want writable", st)
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL} {
		fail.Store(&e)
		before, aside := dials.Load(), setAside(t, s, n.Host, "local")
		for range 2 * agree {
			p.round(ctx)
		}
		if got := setAside(t, s, n.Host, "local") - aside; got != 2*agree {
			t.Fatalf("%v: nexmux_upstream_probes_set_aside_total{reason=\"local\"} rose by %v over %d probes that could not dial", e, got, 2*agree)
		}
		if dials.Load() == before {
			t.Fatal("no probe dialled")
		}
		if st := n.State(); st != Writable {
			t.Fatalf("%v: state %v after probes that could not dial, want writable kept", e, st)
		}
		// The kept state is not a verdict: GET /upstreams says why.
		if le := s.Table()[0].LastError; !strings.Contains(le, e.Error()) {
			t.Fatalf("%v: lastError %q: the table does not say the node is not being probed", e, le)
		}
	}
	// Said once for the streak, not every round.
	if c := strings.Count(log.String(), "not probed"); c != 1 {
		t.Fatalf("%d log lines say the node is not probed, want 1:\n%s", c, log.String())
	}
	refused := syscall.ECONNREFUSED
	fail.Store(&refused)
	p.round(ctx)
	if st := n.State(); st != Down {
		t.Fatalf("refused probe: state %v, want down", st)
	}
}

// statusServer serves a node's status endpoints with h until the test ends
// and returns its URL.
func statusServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := &http.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
