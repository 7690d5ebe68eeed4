package l7

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// servedProxy serves a Proxy with transport tr in front of the nodes at
// urls, as haProxyConfig does, and calls served once a request's ServeHTTP
// has returned: whatever it gives back at its end has been given back.
func servedProxy(t *testing.T, repo string, tr http.RoundTripper, served func(*http.Request), urls ...string) string {
	t.Helper()
	addr, _ := haProxyWrapped(t, io.Discard, 0, repo, Config{Transport: tr}, 50*time.Millisecond, func(p http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.ServeHTTP(w, r)
			served(r)
		})
	}, urls...)
	return addr
}

// heldDial is a Transport dial whose second dial waits (as on a slow DNS
// answer or TCP handshake) until proceed is closed, or for wait if proceed
// is nil, then dials as nexmux does, whose net.Dialer looks the dial's
// context up (its nettrace hooks); looked reports what that lookup
// panicked with (nil: nothing) once it is done.
type heldDial struct {
	n       atomic.Int32
	dialing chan struct{}
	proceed chan struct{}
	wait    time.Duration
	looked  chan any
}

func newHeldDial(proceed chan struct{}, wait time.Duration) *heldDial {
	return &heldDial{dialing: make(chan struct{}), proceed: proceed, wait: wait, looked: make(chan any, 1)}
}

func (d *heldDial) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	if d.n.Add(1) != 2 {
		return upstreamDial(ctx, network, addr)
	}
	close(d.dialing)
	if d.proceed != nil {
		<-d.proceed
	} else {
		// No synchronization with the request: the race detector sees
		// the request's writes and this dial's reads as concurrent.
		time.Sleep(d.wait)
	}
	defer func() {
		p := recover()
		d.looked <- p
		if p != nil {
			c, err = nil, fmt.Errorf("dial: %v", p)
		}
	}()
	return upstreamDial(ctx, network, addr)
}

// goGet sends a GET for path to nexmux at addr on a connection of its own,
// and reports its status (0: no answer) and body on the channel it gives.
func goGet(addr, path string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(teamRequest(addr, http.MethodGet, path, nil))
		if err != nil {
			ch <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	return ch
}

// The Transport dials for a request that finds no idle connection, and
// hands it one another request gives back meanwhile; the dial goes on,
// with the request's context (its values: its trace), after the request
// was answered and ended. What it looks up must still be that request's:
// a context cleared or lent to another request (as a pooled freshness's
// once was) is a nil pointer in the Transport's own goroutine, which ends
// the process, or a race. The trace and its context are the request's
// own (requestTrace), and the freshness is not lent on either.
func TestFreshnessNotReusedWhileItsRequestsDialGoesOn(t *testing.T) {
	hold := make(chan struct{})
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/manifests/held") {
			<-hold
		}
		io.WriteString(w, "ok")
	})
	d := newHeldDial(make(chan struct{}), 0)
	tr := newTransport(d.dial, nil)
	t.Cleanup(tr.CloseIdleConnections)
	servedA := make(chan struct{})
	addr := servedProxy(t, "team-a", tr, func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/manifests/a") {
			close(servedA)
		}
	}, "http://"+node.addr)

	answeredOnAnother(t, addr, node, d, hold, "/v2/app/manifests/a", "200 ok")
	<-servedA
	close(d.proceed)
	if p := <-d.looked; p != nil {
		t.Fatalf("the dial the Transport began for a request answered on another connection looked its context up after the request ended, and panicked: %v", p)
	}
}

// The same with a repository fallback (/v2/ on a route with two
// repositories, the first unknown): the request's second round trip must
// not rewrite the freshness its first round trip's dial still reads.
// Caught by the race detector.
func TestRepoFallbackLeavesTheFirstRoundTripsFreshnessAlone(t *testing.T) {
	hold := make(chan struct{})
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/held"):
			<-hold
		case strings.HasPrefix(r.URL.Path, "/repository/group/v2/"):
			w.WriteHeader(http.StatusNotFound)
		}
		io.WriteString(w, "{}")
	})
	d := newHeldDial(nil, 500*time.Millisecond)
	tr := newTransport(d.dial, nil)
	t.Cleanup(tr.CloseIdleConnections)
	addr := servedProxy(t, "pull:group,push:hosted", tr, func(*http.Request) {}, "http://"+node.addr)

	answeredOnAnother(t, addr, node, d, hold, "/v2/", "200 {}")
	if node.hits.Load() != 3 {
		t.Fatalf("%d requests at the node, want 3: /v2/ was not sent on to the second repository", node.hits.Load())
	}
	if p := <-d.looked; p != nil {
		t.Fatalf("the dial's lookup panicked: %v", p)
	}
}

// answeredOnAnother has a request for path answered (want) on a connection
// another request gives back while the Transport dials for it: the first
// request (/v2/app/manifests/held, which node holds until hold is closed)
// takes the one connection, dialed for it; the second finds no idle
// connection, so the Transport dials (d); the first's answer then gives
// its connection to the second.
func answeredOnAnother(t *testing.T, addr string, node *haNode, d *heldDial, hold chan struct{}, path, want string) {
	t.Helper()
	x := goGet(addr, "/v2/app/manifests/held")
	waitUntil(t, "the first request at the node", func() bool { return node.hits.Load() == 1 })
	a := goGet(addr, path)
	select {
	case <-d.dialing:
	case <-time.After(10 * time.Second):
		t.Fatal("no dial for the second request")
	}
	close(hold)
	for _, ch := range []<-chan string{x, a} {
		if got := <-ch; got != want {
			t.Fatalf("answer %q, want %q", got, want)
		}
	}
}
