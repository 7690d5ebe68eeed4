package upstream

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// One node listed and one a reload removed, still draining: the background
// rounds probe both (README: probes run on demand only with one node and
// none draining), so /readyz answers from the table, as with several
// nodes. It ran its own two rounds as well, beside the background ones:
// two probes in flight on each node at once, and every /readyz waiting for
// them.
func TestReadyzWithADrainingNodeAddsNoProbes(t *testing.T) {
	var mu sync.Mutex
	inFlight, most := map[string]int{}, map[string]int{}
	slow := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/writable") {
				return
			}
			mu.Lock()
			inFlight[name]++
			most[name] = max(most[name], inFlight[name])
			mu.Unlock()
			time.Sleep(150 * time.Millisecond)
			mu.Lock()
			inFlight[name]--
			mu.Unlock()
		}
	}
	a, b := statusServer(t, slow("a")), statusServer(t, slow("b"))
	s := mustSet(t, a, b)
	spec, err := ParseSpec([]string{a}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx, 100*time.Millisecond)
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
				t0 := time.Now()
				s.Readable(false)
				slowest.Store(max(slowest.Load(), int64(time.Since(t0))))
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if most["a"] > 1 || most["b"] > 1 {
		t.Errorf("status probes in flight at once: node a %d, removed node b %d; want one per node (slowest /readyz %v)", most["a"], most["b"], time.Duration(slowest.Load()))
	}
}
