package upstream

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// A node a reload removed still finishes the uploads tagged for it, for up
// to forgetRemovedAfter, so its probes go on: one that stops answering is
// found down, and its follow-ups fail at once instead of each waiting out
// the send and read timeouts on a frozen node.
func TestRemovedNodeStillDrainingIsProbed(t *testing.T) {
	var frozen atomic.Bool
	hold := func(w http.ResponseWriter, r *http.Request) {
		if frozen.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * probeTimeout):
			}
		}
	}
	a := statusServer(t, func(http.ResponseWriter, *http.Request) {})
	b := statusServer(t, hold)
	s := mustSet(t, a, b)
	ctx := context.Background()
	p := &prober{ctx: ctx, s: s, interval: time.Hour, client: &http.Client{Transport: &http.Transport{}}}
	for range agree {
		p.round(ctx)
	}
	var nb *Node
	for _, n := range s.Nodes() {
		if "http://"+n.Host == b {
			nb = n
		}
	}
	if serves, _ := s.Tagged(nb); nb == nil || !serves {
		t.Fatalf("node %s not found up before the reload", b)
	}
	spec, err := ParseSpec([]string{a}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(spec); err != nil {
		t.Fatal(err)
	}
	frozen.Store(true)
	for range agree {
		p.round(ctx)
	}
	if serves, _ := s.Tagged(nb); serves {
		t.Errorf("the removed node stopped answering its probes and still serves the uploads tagged for it")
	}
}
