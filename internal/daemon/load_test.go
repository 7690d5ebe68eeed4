package daemon_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// countingTransport counts the bytes of request and response bodies.
type countingTransport struct {
	rt    http.RoundTripper
	bytes *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ContentLength > 0 {
		c.bytes.Add(r.ContentLength)
	}
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		resp.Body = &countingReadCloser{ReadCloser: resp.Body, n: c.bytes}
	}
	return resp, err
}

type countingReadCloser struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingReadCloser) Read(p []byte) (int, error) {
	k, err := c.ReadCloser.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// pushedImage is one image a pusher finished, for the pullers.
type pushedImage struct {
	ref    name.Reference
	digest v1.Hash
}

type loadStats struct {
	ops, errs, corrupt atomic.Int64
	bytes              atomic.Int64

	mu     sync.Mutex
	pushed []pushedImage
	first  []string // the first few errors, for the failure message
}

func (s *loadStats) fail(format string, args ...any) {
	s.errs.Add(1)
	s.mu.Lock()
	if len(s.first) < 10 {
		s.first = append(s.first, fmt.Sprintf(format, args...))
	}
	s.mu.Unlock()
}

func (s *loadStats) add(p pushedImage) {
	s.mu.Lock()
	s.pushed = append(s.pushed, p)
	s.mu.Unlock()
}

func (s *loadStats) pick(r *rand.Rand) (pushedImage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pushed) == 0 {
		return pushedImage{}, false
	}
	return s.pushed[r.IntN(len(s.pushed))], true
}

// TestLoad runs 50 pushers and 200 pullers of small random images through
// nexmux at once, verifying every digest. NEXMUX_SOAK=1m runs it longer.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	const pushers, pullers = 50, 200
	run := 15 * time.Second
	if v := os.Getenv("NEXMUX_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("NEXMUX_SOAK=%q: want a duration such as 1m", v)
		}
		run = d
	}
	st := stack.Start(t, stack.Options{Config: config.Config{Route: []string{
		"team-a.nexmux.test=pull:team-a,push:team-a-hosted",
		"team-b.nexmux.test=pull:team-b,push:team-b-hosted",
	}}})
	stats := &loadStats{}

	// A few client transports, as a few docker daemons would have: half
	// speak HTTP/2 (one multiplexed connection), half HTTP/1.1 (pools).
	var transports []http.RoundTripper
	for i := 0; i < 8; i++ {
		tr := st.Transport()
		if i%2 == 1 {
			tr = h1(st)
		}
		tr.MaxIdleConnsPerHost = 64
		t.Cleanup(tr.CloseIdleConnections)
		transports = append(transports, countingTransport{rt: tr, bytes: &stats.bytes})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := func(i int) []remote.Option {
		return []remote.Option{
			remote.WithContext(ctx),
			remote.WithTransport(transports[i%len(transports)]),
			remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}),
			// No client retries: every failure through nexmux counts.
			remote.WithRetryPredicate(func(error) bool { return false }),
			remote.WithRetryStatusCodes(),
		}
	}
	team := func(i int) string { return []string{"team-a", "team-b"}[i%2] }

	push := func(i, seq int, r *rand.Rand) {
		// 2 layers of 8-32 KiB: the point is many concurrent requests,
		// not bandwidth (2 cores, race detector in CI).
		img, err := random.Image(int64(8<<10+r.IntN(24<<10)), 2)
		if err != nil {
			stats.fail("random image: %v", err)
			return
		}
		ref, err := name.ParseReference(fmt.Sprintf("%s/load/p%d:n%d", st.Host(team(i)), i, seq))
		if err != nil {
			stats.fail("%v", err)
			return
		}
		if err := remote.Write(ref, img, opts(i)...); err != nil {
			if ctx.Err() == nil {
				stats.fail("push %s: %v", ref, err)
			}
			return
		}
		d, _ := img.Digest()
		stats.add(pushedImage{ref: ref, digest: d})
		stats.ops.Add(1)
	}
	pull := func(i int, r *rand.Rand) {
		p, ok := stats.pick(r)
		if !ok {
			time.Sleep(10 * time.Millisecond)
			return
		}
		img, err := remote.Image(p.ref, opts(i)...)
		if err == nil {
			err = validate.Image(img)
		}
		if err != nil {
			if ctx.Err() == nil {
				stats.fail("pull %s: %v", p.ref, err)
			}
			return
		}
		if d, _ := img.Digest(); d != p.digest {
			stats.corrupt.Add(1)
			stats.fail("pull %s: digest %s, pushed %s", p.ref, d, p.digest)
			return
		}
		stats.ops.Add(1)
	}

	// Something to pull from the first moment.
	seedRand := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 4; i++ {
		push(i, 0, seedRand)
	}
	if stats.errs.Load() > 0 {
		t.Fatalf("seeding: %v", stats.first)
	}

	start := time.Now()
	deadline := start.Add(run)
	var wg sync.WaitGroup
	for i := 0; i < pushers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for seq := 1; time.Now().Before(deadline); seq++ {
				push(i, seq, r)
			}
		}()
	}
	for i := 0; i < pullers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 11))
			for time.Now().Before(deadline) {
				pull(i, r)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)

	// Nothing lost: every image a push reported done is still there, with
	// the digest pushed.
	stats.mu.Lock()
	all := append([]pushedImage(nil), stats.pushed...)
	stats.mu.Unlock()
	var lost atomic.Int64
	work := make(chan pushedImage)
	var vg sync.WaitGroup
	for w := 0; w < 16; w++ {
		vg.Add(1)
		go func() {
			defer vg.Done()
			pl, err := remote.NewPuller(opts(w)...)
			if err != nil {
				t.Error(err)
				return
			}
			for p := range work {
				d, err := remote.Head(p.ref, append(opts(w), remote.Reuse(pl))...)
				if err != nil || d.Digest != p.digest {
					lost.Add(1)
					stats.fail("after the load, %s: %v %v (pushed %s)", p.ref, d, err, p.digest)
				}
			}
		}()
	}
	for _, p := range all {
		work <- p
	}
	close(work)
	vg.Wait()

	summary := fmt.Sprintf("load: ops=%d bytes=%d errors=%d duration=%s pushers=%d pullers=%d images=%d lost=%d corrupted=%d",
		stats.ops.Load(), stats.bytes.Load(), stats.errs.Load(), took.Round(time.Millisecond), pushers, pullers, len(all), lost.Load(), stats.corrupt.Load())
	t.Log(summary)
	fmt.Println(summary)
	if stats.errs.Load() > 0 {
		t.Fatalf("%d errors; first: %q", stats.errs.Load(), stats.first)
	}
	if stats.ops.Load() < pushers {
		t.Fatalf("only %d operations in %s", stats.ops.Load(), took)
	}
}
