package upstream

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A probe that times out while the node answers real requests is no
// verdict: the node is busy, not gone. Marked down (or, for the writable
// question, read-only) for it, a loaded node's traffic would move to the
// others and load them in turn, and its open uploads would be lost. A node
// that answers nothing is still found down by its probes.
func TestProbeTimeoutWhileNodeAnswersIsNoVerdict(t *testing.T) {
	var slowStatus, slowWritable atomic.Bool
	s := mustSet(t, statusServer(t, func(w http.ResponseWriter, r *http.Request) {
		slow := slowStatus.Load()
		if strings.HasSuffix(r.URL.Path, "/writable") {
			slow = slowWritable.Load()
		}
		if slow {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * probeTimeout):
			}
		}
	}))
	n := s.Nodes()[0]
	ctx := context.Background()
	p := &prober{ctx: ctx, s: s, interval: time.Hour, client: &http.Client{Transport: &http.Transport{}}}
	rounds := func() {
		for range agree {
			p.round(ctx)
		}
	}
	// answering reports real answers from the node until the returned
	// func is called, as l7 does for each request under /repository/.
	answering := func() func() {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				s.ReportAnswer(n, http.StatusOK)
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		return func() { close(stop); <-done }
	}

	rounds()
	if st := n.State(); st != Writable {
		t.Fatalf("state %v after healthy probes, want writable", st)
	}
	for _, c := range []struct {
		name string
		slow *atomic.Bool
		idle State // the state probes find when no real answer comes
	}{
		{"status", &slowStatus, Down},
		{"writable", &slowWritable, ReadOnly},
	} {
		c.slow.Store(true)
		stop := answering()
		before := setAside(t, s, n.Host, "busy")
		rounds()
		stop()
		// Alertable, not only in the table: a status endpoint that hangs
		// for good would otherwise show only in lastError.
		if got := setAside(t, s, n.Host, "busy") - before; got != agree {
			t.Fatalf("%s: nexmux_upstream_probes_set_aside_total{reason=\"busy\"} rose by %v over %d set-aside probes", c.name, got, agree)
		}
		if st := n.State(); st != Writable {
			t.Fatalf("%s probe timing out while the node answers real requests: state %v, want writable kept", c.name, st)
		}
		if le := s.Table()[0].LastError; !strings.Contains(le, "state kept") {
			t.Fatalf("%s: lastError %q does not say the probe was set aside", c.name, le)
		}
		// Nothing answered: the probes are believed (a frozen node).
		rounds()
		if st := n.State(); st != c.idle {
			t.Fatalf("%s probe timing out with no real answer: state %v, want %v", c.name, st, c.idle)
		}
		c.slow.Store(false)
		rounds()
		if st := n.State(); st != Writable {
			t.Fatalf("%s: state %v after healthy probes again, want writable", c.name, st)
		}
	}
}

// "Answered while the probe waited" must not be read off the wall clock: a
// clock stepped back (NTP, a VM resumed) would date every answer from
// before the step after each probe sent for as long as the step, and a
// node frozen meanwhile would keep its state.
func TestProbeTimeoutAfterClockStepBackIsBelieved(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	var frozen atomic.Bool
	s := mustSet(t, statusServer(t, func(w http.ResponseWriter, r *http.Request) {
		if frozen.Load() {
			<-r.Context().Done()
		}
	}))
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	n := s.Nodes()[0]
	ctx := context.Background()
	p := &prober{ctx: ctx, s: s, interval: time.Hour, client: &http.Client{Transport: &http.Transport{}}}
	for range agree {
		p.round(ctx)
	}
	if st := n.State(); st != Writable {
		t.Fatalf("state %v after healthy probes, want writable", st)
	}
	s.ReportAnswer(n, http.StatusOK) // a real answer, then the clock steps back
	mu.Lock()
	clock = clock.Add(-time.Hour)
	mu.Unlock()
	frozen.Store(true)
	for range agree {
		p.round(ctx)
	}
	if st := n.State(); st != Down {
		t.Fatalf("frozen node after the wall clock stepped back: state %v (%s), want down", st, s.Table()[0].LastError)
	}
}

// setAside reads nexmux_upstream_probes_set_aside_total for node and
// reason from s's metrics.
func setAside(t *testing.T, s *Set, node, reason string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "nexmux_upstream_probes_set_aside_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["node"] == node && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no nexmux_upstream_probes_set_aside_total{node=%q,reason=%q}", node, reason)
	return 0
}

// A Nexus whose every node answers its status probes, but only after the
// probes' timeout (a cluster slow as a whole), is found down like a frozen
// one; its late answers show it alive, so Pick fails open onto it instead
// of refusing every request for as long as Nexus stays slow (no request
// reaches a down node, so no real answer could ever clear it). Nodes that
// never answered late stay out: a frozen cluster is refused at once.
func TestSlowClusterFailsOpen(t *testing.T) {
	for _, c := range []struct {
		name  string
		delay time.Duration // of every status answer once slow
		serve bool          // whether Pick must fail open
	}{
		{"slow", probeTimeout + 300*time.Millisecond, true},
		{"frozen", time.Hour, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var slow atomic.Bool
			h := func(w http.ResponseWriter, r *http.Request) {
				if slow.Load() {
					select {
					case <-r.Context().Done():
					case <-time.After(c.delay):
					}
				}
			}
			s := mustSet(t, statusServer(t, h), statusServer(t, h))
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			p := &prober{ctx: ctx, s: s, interval: time.Hour, client: &http.Client{Transport: &http.Transport{}}}
			for range agree {
				p.round(ctx)
			}
			if _, err := s.Pick(Read, ""); err != nil {
				t.Fatalf("healthy nodes: %v", err)
			}
			slow.Store(true)
			for range agree {
				p.round(ctx)
			}
			for _, n := range s.Nodes() {
				if st := n.State(); st != Down {
					t.Fatalf("%s after probes that timed out: %v, want down", n.Host, st)
				}
			}
			// The late answers come c.delay after the probes were sent.
			deadline := time.Now().Add(2 * time.Second)
			for {
				ns, err := s.Pick(Read, "")
				if c.serve && err == nil && len(ns) == 2 {
					break
				}
				if time.Now().After(deadline) {
					if c.serve {
						t.Fatalf("every node slow, answering its probes %v late: Pick gave %d node(s), %v; want both (fail open)", c.delay-probeTimeout, len(ns), err)
					}
					if err == nil {
						t.Fatalf("every node frozen: Pick gave %d node(s), want ErrAllDown", len(ns))
					}
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
