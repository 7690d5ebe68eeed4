package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A lone node is probed on demand only (for /readyz), so one found down by
// a refused connection on real traffic stayed down in its state, in
// /upstreams and in nexmux_upstream_node_state for good, while traffic
// went on to it and succeeded, unless a readiness probe asked: systemd has
// none. While it is down it is probed on the health interval; once up, no
// more.
func TestLoneNodeFoundDownIsProbedBackUp(t *testing.T) {
	var probes atomic.Int64
	nx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer nx.Close()
	s := mustSet(t, nx.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const interval = 50 * time.Millisecond
	s.Start(ctx, interval)
	n := s.Lone()
	if n == nil {
		t.Fatal("no lone node")
	}
	// Up and not probed: a lone node has no choice to make.
	time.Sleep(10 * interval)
	if got := probes.Load(); got != 0 {
		t.Fatalf("a lone node that is up was probed %d times", got)
	}
	s.ReportConnectFailure(n, errors.New("connect: connection refused"))
	if st := n.State(); st != Down {
		t.Fatalf("state after a refused connection: %v, want down", st)
	}
	for deadline := time.Now().Add(30 * time.Second); n.State() == Down; time.Sleep(interval) {
		if time.Now().After(deadline) {
			t.Fatalf("a lone node found down is still down 30 s later, though it answers its status (%d probes)", probes.Load())
		}
	}
	// Back up: probed no more.
	time.Sleep(2 * interval)
	before := probes.Load()
	time.Sleep(10 * interval)
	if got := probes.Load() - before; got != 0 {
		t.Errorf("a lone node back up was probed %d more times", got)
	}
}
