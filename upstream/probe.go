package upstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/nexmux/nexmux/internal/logtext"
)

// Probe figures: the README's "HA" section quotes them.
const (
	// DefaultHealthInterval is --health-interval's default.
	DefaultHealthInterval = 2 * time.Second
	probeTimeout          = time.Second
	// lateProbeTimeout bounds a status question asked again, without a
	// verdict riding on it, of a node whose probe timed out: an answer
	// within it shows a slow node, not a frozen one (Node.answeredLate).
	lateProbeTimeout = 10 * time.Second
	// lateFresh is how long a late answer keeps its node a fail-open
	// candidate: a few probe rounds at the default interval.
	lateFresh = lateProbeTimeout + 3*DefaultHealthInterval
	// probeMaxHeaderBytes bounds a status answer's headers: Jetty sends
	// 8 KiB at most unless raised. The body is never read.
	probeMaxHeaderBytes = 64 << 10
	// agree is how many probes in a row must see a new state.
	agree = 2
	// ReadyzWait bounds how long Readable, so /readyz, waits with a single
	// node: it probes the node then, agree rounds of probeTimeout each. A
	// readiness probe's timeout must exceed it.
	ReadyzWait = agree * probeTimeout
)

type prober struct {
	ctx      context.Context
	s        *Set
	interval time.Duration
	client   *http.Client
	kickc    chan struct{}

	refreshMu sync.Mutex
	refreshed time.Time
	// roundMu keeps one round at a time, so one probe per node in
	// flight, when a reload changes the node count under a refresh.
	roundMu sync.Mutex
}

// Start probes every node every interval (jittered by ±20%) until ctx ends.
// The first round runs at once.
func (s *Set) Start(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultHealthInterval
	}
	p := &prober{ctx: ctx, s: s, interval: interval, kickc: make(chan struct{}, 1)}
	p.client = &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: probeTimeout}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     probeIdle(interval),
			// net/http's default would read 10 MiB of a broken answer's
			// headers, each probe of each node.
			MaxResponseHeaderBytes: probeMaxHeaderBytes,
		},
		// A status endpoint that redirects is not a healthy one.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.probeMu.Lock()
	s.prober = p
	s.probeMu.Unlock()
	go p.run(ctx)
}

// probeIdle keeps a probe's connection for the next few probes, but below
// Jetty's 30 s idle timeout: a probe sent on a connection Jetty is closing
// fails, and a failed probe counts against the node.
func probeIdle(interval time.Duration) time.Duration { return min(3*interval, 20*time.Second) }

func (s *Set) currentProber() *prober {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	return s.prober
}

// kick runs a round now (a reload added nodes).
func (p *prober) kick() {
	select {
	case p.kickc <- struct{}{}:
	default:
	}
}

func (p *prober) run(ctx context.Context) {
	for {
		p.s.forgetRemoved()
		start := time.Now()
		// One node is probed on demand only (Readable, for /readyz): with
		// no choice to make, probes would only add requests to Nexus. But
		// while it is down (a refused connection on real traffic), so that
		// its state, /upstreams and the node-state metric see it back
		// without a readiness probe asking (systemd has none). A node a
		// reload removed counts while it drains (round).
		if nodes := p.s.withRemoved(); len(nodes) > 1 || len(nodes) == 1 && nodes[0].State() == Down {
			p.round(ctx)
		}
		// From the round's start: a round that waited out a frozen node's
		// timeout must not push every later probe of it back by as much.
		d := time.Duration(float64(p.interval)*(0.8+0.4*rand.Float64())) - time.Since(start)
		t := time.NewTimer(max(d, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			// Nothing probes again: do not leave the probes' keep-alive
			// connections open until their idle timeout.
			p.client.CloseIdleConnections()
			return
		case <-p.kickc:
			t.Stop()
		case <-t.C:
		}
	}
}

// round probes every node in parallel and waits for all of them (each is
// bounded by probeTimeout). Nodes a reload removed are probed while they
// drain: their tagged uploads still go to them, and a frozen one found down
// fails those after the upload question instead of the send and read
// timeouts.
func (p *prober) round(ctx context.Context) {
	p.roundMu.Lock()
	defer p.roundMu.Unlock()
	var wg sync.WaitGroup
	for _, n := range p.s.withRemoved() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, reachable, connectErr, busy, why := p.probe(ctx, n)
			switch {
			case ctx.Err() != nil:
			case st == noVerdict && busy:
				p.s.observeNoVerdict(n, asideBusy, why)
			case st == noVerdict:
				p.s.observeNoVerdict(n, asideLocal, why)
			default:
				p.s.observeProbe(n, st, reachable, connectErr, why)
			}
		}()
	}
	wg.Wait()
}

// noVerdict is a probe that could not ask (LocalDialFailure), or that
// timed out while the node answered real requests (busy): the node's state
// stays as it was. A busy node marked down would move its load onto the
// others, and lose its open uploads; a frozen one answers nothing, so its
// probes are believed.
const noVerdict State = -1

// probe asks status and status/writable at once.
func (p *prober) probe(ctx context.Context, n *Node) (st State, reachable, connectErr, busy bool, why string) {
	before := n.answered.Load()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// answering: the probe timed out, but a real request got its answer
	// from the node while the probe waited.
	answering := func(err error) bool { return timedOut(err) && n.answered.Load() != before }
	base := Origin(n.Scheme, n.Host) + p.s.ctxPath + "/service/rest/v1/status"
	type res struct {
		code int
		err  error
	}
	var status, writable res
	var wg sync.WaitGroup
	get := func(u string, out *res) {
		defer wg.Done()
		out.code, out.err = p.ask(ctx, u)
	}
	wg.Add(2)
	go get(base, &status)
	go get(base+"/writable", &writable)
	wg.Wait()
	switch {
	case LocalDialFailure(status.err):
		return noVerdict, false, false, false, status.err.Error()
	case LocalDialFailure(writable.err):
		return noVerdict, false, false, false, writable.err.Error()
	case answering(status.err):
		return noVerdict, false, false, true, status.err.Error()
	case status.err != nil:
		connectErr := ConnectFailure(status.err)
		if !connectErr && timedOut(status.err) {
			p.askLate(n, base)
		}
		return Down, false, connectErr, false, status.err.Error()
	case status.code != http.StatusOK:
		return Down, true, false, false, "status " + http.StatusText(status.code)
	case writable.err == nil && writable.code == http.StatusServiceUnavailable:
		// Nexus's one read-only answer (frozen, maintenance).
		return ReadOnly, true, false, false, ""
	case writable.err == nil && writable.code >= 500:
		// Failing its writable question only: its status answer is
		// Nexus's word that it serves reads, and nothing says it takes
		// writes. Down, every node's such failure would leave the cluster
		// to fail-open and make every replica unready (/readyz) while
		// reads can be served.
		return ReadOnly, true, false, false, fmt.Sprintf("status/writable answered %d %s", writable.code, http.StatusText(writable.code))
	case writable.err == nil:
		// 200; or no such endpoint (404), or a front hiding it: nothing
		// says the node takes no writes, and its status says it is up.
		return Writable, true, false, false, ""
	case answering(writable.err):
		return noVerdict, true, false, true, writable.err.Error()
	case writable.err != nil && !timedOut(writable.err):
		// Status answered, then the writable question's connection was
		// refused or broke: the node went away between the two, which is
		// no answer that it takes no writes. A refusal marks it down at
		// once, as the status question's does.
		connectErr := ConnectFailure(writable.err)
		return Down, !connectErr, connectErr, false, writable.err.Error()
	default:
		return ReadOnly, true, false, false, ""
	}
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// askLate asks n's status endpoint again, in the background, with
// lateProbeTimeout (one such question per node at a time): a 200 marks the
// node slow, not frozen (observeLate). A cluster slow as a whole is found
// down by its probes, and no request reaches a down node, so nothing else
// could show it alive.
func (p *prober) askLate(n *Node, u string) {
	if !n.lateProbe.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer n.lateProbe.Store(false)
		ctx, cancel := context.WithTimeout(p.ctx, lateProbeTimeout)
		defer cancel()
		if code, err := p.ask(ctx, u); err == nil && code == http.StatusOK {
			p.s.observeLate(n)
		}
	}()
}

// ask GETs u and returns its status code.
func (p *prober) ask(ctx context.Context, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// ConnectFailure reports a failed connect (refused, timed out,
// unreachable, a name that does not resolve): the node cannot be reached.
// A dial that failed for want of a local resource is not one.
func ConnectFailure(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && !LocalDialFailure(err)
}

// LocalDialFailure reports a dial that failed on this host before the node
// had a say: out of descriptors, buffers or local ports. Every node would
// fail alike, so it says nothing of the node: marked down for it, nodes
// would go down together while nexmux is short of descriptors, and their
// downloads under way be cut.
func LocalDialFailure(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Why a probe was no verdict: the index of Node.setAside, and what the
// table and the log say of it.
const (
	asideBusy = iota
	asideLocal
)

var asideReasons = [...]struct{ label, what string }{
	asideBusy:  {"busy", "probe timed out while the node answered requests (busy, not down; state kept)"},
	asideLocal: {"local", "not probed (nexmux's own dial failed; state kept)"},
}

// observeNoVerdict keeps the node's state but says what and why in the
// table, the metrics, and the log once a streak: a state no probe confirms
// is otherwise invisible (a node gone meanwhile would still read writable).
func (s *Set) observeNoVerdict(n *Node, reason int, why string) {
	why = logtext.Bound(why)
	n.setAside[reason].Add(1)
	what := asideReasons[reason].what
	n.mu.Lock()
	first := !n.unprobed
	n.unprobed = true
	n.lastErr, n.lastErrAt = what+": "+why, s.now()
	n.mu.Unlock()
	if first {
		s.log.Warn("upstream node "+what, "node", n.Host, "err", why)
	}
}

func (s *Set) observeProbe(n *Node, st State, reachable, connectErr bool, why string) {
	why = logtext.Bound(why)
	t := s.now()
	n.mu.Lock()
	again := n.unprobed
	n.unprobed = false
	n.reachable = reachable
	if why != "" {
		n.lastErr, n.lastErrAt = why, t
	}
	if st == n.pending {
		n.pendingN++
	} else {
		n.pending, n.pendingN = st, 1
	}
	changed, joined := false, false
	from := n.state
	switch {
	case connectErr:
		changed = n.setState(Down, t)
	case n.pendingN >= agree:
		changed = n.setState(st, t)
		if !n.joined && st != Down {
			n.joined, joined = true, true
		}
	}
	n.mu.Unlock()
	if again {
		s.log.Info("upstream node probed again", "node", n.Host, "state", st.String())
	}
	if joined {
		s.log.Info("upstream node joined after passing its probes", "node", n.Host, "state", st.String())
	}
	if changed {
		s.log.Info("upstream node state", "node", n.Host, "from", from.String(), "to", st.String(), "why", why)
	}
}

// observeLate records a status question answered 200 within
// lateProbeTimeout after a probe timed out.
func (s *Set) observeLate(n *Node) {
	t := s.now()
	n.mu.Lock()
	episode := !n.answeredLate(t)
	n.lateAt = t
	n.mu.Unlock()
	if episode {
		s.log.Warn("upstream node answers its probes late: slow, not frozen; taken when every node fails its probes", "node", n.Host)
	}
}

// refresh probes a lone node for /readyz, at most once per interval.
func (p *prober) refresh() {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	if time.Since(p.refreshed) < p.interval {
		return
	}
	// Two rounds: a state changes after two agreeing probes.
	for range agree {
		p.round(p.ctx)
	}
	p.refreshed = time.Now()
}
