package upstream

import (
	"testing"
	"time"
)

// A node whose time-to-headers average was pushed up by one stall (a GC
// pause, a slowness every node shared) gets almost no least-loaded reads,
// so no read comes to bring its average down: measured through two nexmux
// replicas and the fixture, a node slow for 3 s got 1 of 300 tag reads a
// minute after it had recovered. An average no sample refreshes must fade,
// while a node that is slow now still gets fewer reads.
func TestStaleSlowAverageFades(t *testing.T) {
	s := mustSet(t, "http://a:1", "http://b:1", "http://c:1")
	a, b, c := s.Nodes()[0], s.Nodes()[1], s.Nodes()[2]
	a.ObserveLatency(600 * time.Millisecond) // one slow answer: a stall
	for range 16 {
		b.ObserveLatency(time.Millisecond)
		c.ObserveLatency(time.Millisecond)
	}
	share := func() float64 {
		first := 0
		const picks = 3000
		for range picks {
			ns, err := s.Pick(Read, "")
			if err != nil {
				t.Fatal(err)
			}
			if ns[0] == a {
				first++
			}
		}
		return float64(first) / picks
	}
	// Slow now: a's weight is 1/600 of the others' (expected share 0.08%).
	if got := share(); got > 0.05 {
		t.Fatalf("a node slow right now got %.1f%% of the reads", got*100)
	}
	// A minute on, with no sample since: as fast as the others for all
	// anyone knows (expected share a third).
	s.now = func() time.Time { return time.Now().Add(time.Minute) }
	if got := share(); got < 0.15 {
		t.Fatalf("a minute after its one slow answer, the node got %.1f%% of the reads", got*100)
	}
	// A fresh sample after the quiet minute starts from the faded average,
	// not from the stale 600 ms.
	s.now = time.Now
	a.sampled.Add(-int64(time.Minute))
	a.ObserveLatency(time.Millisecond)
	if lat := a.Latency(); lat > 5*time.Millisecond {
		t.Fatalf("after a quiet minute and a 1 ms answer the average is %v", lat)
	}
}
