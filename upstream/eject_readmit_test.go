package upstream

import (
	"slices"
	"testing"
	"time"
)

// A node comes back from its ejection with a fresh count of failures, as
// Envoy's outlier detection readmits a host: the failures it gave while
// out (an upload's chunks, the requests it took with no other node
// serving) are what ejected it, and must not eject it again at the first
// failure after its return.
func TestEjectedNodeComesBackWithAFreshCount(t *testing.T) {
	clock := time.Unix(1000, 0)
	s := mustSet(t, "http://a:1", "http://b:1")
	s.now = func() time.Time { return clock }
	a := s.Nodes()[0]
	fail := func(k int) {
		for range k {
			s.ReportResult(a, false, "status 503")
		}
	}
	picked := func() bool {
		ns, err := s.Pick(Read, "")
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(ns, a)
	}
	fail(5)
	if picked() {
		t.Fatal("not ejected after 5 failures in a row")
	}
	fail(5) // while ejected
	clock = clock.Add(ejectBase)
	if !picked() {
		t.Fatalf("still out after %v", ejectBase)
	}
	fail(1)
	if !picked() {
		t.Fatal("ejected again by its first failure after coming back: the failures while it was out still counted")
	}
	fail(3)
	if !picked() {
		t.Fatal("ejected again by its fourth failure after coming back")
	}
	fail(1)
	if picked() {
		t.Fatal("not ejected again after 5 failures in a row since coming back")
	}
}
