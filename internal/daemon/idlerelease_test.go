package daemon_test

import (
	"cmp"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/mux"
)

// pausing sends every request after a pause longer than the stack's
// --idle-release-after, and counts the requests that went on a reused
// connection.
type pausing struct {
	next   http.RoundTripper
	pause  time.Duration // default: 10 × stack.StackIdleRelease
	reused atomic.Int64
	total  atomic.Int64
}

func (p *pausing) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(cmp.Or(p.pause, 10*stack.StackIdleRelease))
	p.total.Add(1)
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			p.reused.Add(1)
		}
	}}
	return p.next.RoundTrip(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
}

// A registry client on HTTP/1.1 with one connection per host and one
// request at a time, pausing before every request: login, push and pull go
// over released connections that resume, and the image comes back whole.
func TestPushPullOverReleasedConnections(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: teamRoutes()})
	tr := st.Transport()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = &tls.Config{RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}}
	tr.MaxConnsPerHost = 1
	p := &pausing{next: tr}
	opts := []remote.Option{remote.WithContext(ctxT(t)), remote.WithTransport(p), remote.WithJobs(1),
		remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password})}

	pushPull(t, st.Host("team-a-push")+"/team/released:1", st.Host("team-a")+"/team/released:1", opts...)

	releases := counter(t, st, "nexmux_idle_releases_total")
	// Every request on a reused connection found it released while the
	// client paused.
	if reused := p.reused.Load(); reused < p.total.Load()/2 || releases < float64(reused) {
		t.Fatalf("%d requests, %d on a reused connection, %v releases: want most requests on released connections", p.total.Load(), reused, releases)
	}
}

// counter reads a counter without a scrape (stack tests share nexmux's
// process).
func counter(t *testing.T, st *stack.Stack, name string) float64 {
	t.Helper()
	mfs, err := st.Daemon.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.Metric[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// --idle-release-after 0 keeps idle connections with net/http: a client
// pausing past the default delay between two requests on one connection
// causes no release.
func TestIdleReleaseOff(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: teamRoutes(), KeepIdleRelease: true})
	tr := st.Transport()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = &tls.Config{RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}}
	p := &pausing{next: tr, pause: mux.DefaultIdleRelease + 300*time.Millisecond}
	c := &http.Client{Transport: p}
	for range 2 {
		resp, err := c.Get("https://" + st.Host("team-a") + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if p.reused.Load() != 1 {
		t.Fatalf("%d of 2 requests on a reused connection, want 1", p.reused.Load())
	}
	if n := counter(t, st, "nexmux_idle_releases_total"); n != 0 {
		t.Fatalf("%v releases with --idle-release-after 0", n)
	}
}
