package upstream

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Rounds start every --health-interval (jittered), however long the last
// one waited for a frozen node: counted from a round's end instead, a
// frozen node's probe timeout is added to every gap, and the two probes
// that find it down come a second or more later than the README says.
func TestFrozenNodeProbedEveryInterval(t *testing.T) {
	const interval = time.Second
	arrived := make(chan time.Time, 8)
	frozen := statusServer(t, func(w http.ResponseWriter, r *http.Request) {
		// Only the writable question: a status probe that timed out is
		// asked again in the background too (askLate).
		if strings.HasSuffix(r.URL.Path, "/writable") {
			select {
			case arrived <- time.Now():
			default:
			}
		}
		<-r.Context().Done()
	})
	healthy := statusServer(t, func(http.ResponseWriter, *http.Request) {})
	s := mustSet(t, healthy, frozen)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s.Start(ctx, interval)

	var at [2]time.Time
	for i := range at {
		select {
		case at[i] = <-arrived:
		case <-time.After(4 * interval):
			t.Fatalf("probe %d of the frozen node never came", i+1)
		}
	}
	// Jitter is ±20%; a round that waited probeTimeout for the frozen
	// node has used that much of the wait. Counted from the round's end,
	// the gap is at least 0.8 x interval + probeTimeout: 1.8 s here.
	if gap, most := at[1].Sub(at[0]), interval*6/5+500*time.Millisecond; gap > most {
		t.Fatalf("probes of a frozen node %v apart with --health-interval %v, want at most %v", gap.Round(time.Millisecond), interval, most)
	}
}
