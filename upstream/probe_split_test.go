package upstream

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// refuseWritable is a probe transport whose status/writable question is
// refused (the node died between the probe's two questions) while mode is
// "refuse".
type refuseWritable struct {
	next http.RoundTripper
	mode *atomic.Value
}

func (rt refuseWritable) RoundTrip(r *http.Request) (*http.Response, error) {
	if rt.mode.Load() == "refuse" && strings.HasSuffix(r.URL.Path, "/status/writable") {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return rt.next.RoundTrip(r)
}

// A node that dies between the probe's two questions, its status answered
// and its status/writable connection refused or broken, is not read-only:
// it is gone. A refused connection marks it down at once (README, Nodes),
// and a node that answers status but breaks the writable question's
// connection is not one that says it takes no writes.
func TestProbeHalfAnsweredIsNotReadOnly(t *testing.T) {
	var mode atomic.Value
	mode.Store("")
	u := statusServer(t, func(w http.ResponseWriter, r *http.Request) {
		if mode.Load() == "break" && strings.HasSuffix(r.URL.Path, "/status/writable") {
			// Gone mid-answer: the connection closes with no status line.
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		}
	})
	s := mustSet(t, u)
	n := s.Nodes()[0]
	ctx := context.Background()
	p := &prober{ctx: ctx, s: s, interval: time.Hour, client: &http.Client{Transport: refuseWritable{
		next: &http.Transport{DisableKeepAlives: true}, mode: &mode}}}
	for _, m := range []string{"refuse", "break"} {
		mode.Store("")
		for range agree {
			p.round(ctx)
		}
		if st := n.State(); st != Writable {
			t.Fatalf("%s: state %v after healthy probes, want writable", m, st)
		}
		mode.Store(m)
		for i := range 2 * agree {
			p.round(ctx)
			st := n.State()
			if st == ReadOnly {
				t.Fatalf("%s: state read-only after %d probes whose status answered and whose status/writable connection failed: read-only is a node that answers it does not take writes", m, i+1)
			}
			if m == "refuse" && st != Down {
				t.Fatalf("refuse: state %v after a probe whose status/writable connection was refused, want down at once", st)
			}
		}
		if st := n.State(); st != Down {
			t.Fatalf("%s: state %v after %d such probes, want down", m, st, 2*agree)
		}
	}
}
