package l7

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// DefaultUpstreamMaxConns bounds the requests in flight to one node, well
// below Jetty's default 400 threads, so a burst queues briefly here instead
// of starving Nexus's own UI, tasks and the other replicas.
const DefaultUpstreamMaxConns = 200

// poolQueueTimeout is how long a request waits for a free slot, on its
// node or the nodes it may move on to, before it gets a 503 with
// Retry-After.
const poolQueueTimeout = 2 * time.Second

// Upstreams is the set of Nexus nodes behind nexmux (a Nexus HA cluster, or
// one node): the health table and node choice live in package upstream,
// the per-node connection bound here.
type Upstreams struct {
	set      *upstream.Set
	scheme   string
	ctxPath  string
	maxConns int
	pools    poolSet
	replay   replayBudget
}

// UpstreamOptions are the optional parts of NewUpstreams.
type UpstreamOptions struct {
	MaxConns int    // per node; 0: DefaultUpstreamMaxConns
	Secret   []byte // affinity secret; nil: derived from the node ids
}

// ParseUpstreams parses base URLs such as "http://nexus:8081/nexus". All
// nodes must share scheme and context path.
func ParseUpstreams(raw []string) (*Upstreams, error) {
	spec, err := upstream.ParseSpec(raw, nil)
	if err != nil {
		return nil, err
	}
	return NewUpstreams(spec, nil, UpstreamOptions{}), nil
}

// NewUpstreams builds the node set of spec.
func NewUpstreams(spec *upstream.Spec, set *upstream.Set, o UpstreamOptions) *Upstreams {
	if set == nil {
		set = upstream.NewSet(spec, nil)
	}
	if o.Secret != nil {
		set.SetSecret(o.Secret)
	}
	u := &Upstreams{set: set, scheme: spec.Scheme, ctxPath: spec.CtxPath, maxConns: o.MaxConns}
	if u.maxConns <= 0 {
		u.maxConns = DefaultUpstreamMaxConns
	}
	return u
}

// Set is the health table and node chooser.
func (u *Upstreams) Set() *upstream.Set { return u.set }

// ContextPath is the Nexus context path ("" or e.g. "/nexus").
func (u *Upstreams) ContextPath() string { return u.ctxPath }

// Nodes returns the nodes' scheme://host.
func (u *Upstreams) Nodes() []*url.URL {
	var out []*url.URL
	for _, n := range u.set.Nodes() {
		out = append(out, &url.URL{Scheme: n.Scheme, Host: n.Host})
	}
	return out
}

func (u *Upstreams) hostnames() []string {
	var out []string
	for _, n := range u.set.Nodes() {
		out = append(out, hostOf(n.Host))
	}
	return out
}

// nodeKeys lists the nodes' "host:port" as publicURLs.atNode compares them.
func (u *Upstreams) nodeKeys() []string {
	var out []string
	for _, n := range u.set.Nodes() {
		out = append(out, nodeKey(n.Host))
	}
	return out
}

// refused reports a failure to connect: nothing reached the node, so trying
// another node cannot duplicate a request.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// poolSet holds each node host's places.
type poolSet struct {
	m syncMap[string, *nodePool]
}

// nodePool is a node's --upstream-max-conns places. A request of a client
// address (given when per-client limits are on) takes a place only while
// that address holds fewer than are free: alone it may hold half, a second
// address half the rest, and so on. Requests Nexus does not finish, or
// downloads a client stops reading (held until --send-timeout), so never
// take every place from a few addresses: the others are still served.
type nodePool struct {
	mu    sync.Mutex
	max   int
	taken int
	held  map[netip.Addr]int // places per client address
	// waiters, in arrival order; none of them may take a place now (each
	// release hands places to those that may, at once).
	waiters []*poolWaiter
}

type poolWaiter struct {
	client  netip.Addr
	ready   chan struct{} // closed when granted
	granted bool
}

// slot is a place acquire took.
type slot struct {
	p      *nodePool
	client netip.Addr
}

// mayTake reports whether client may take a place now.
func (p *nodePool) mayTake(client netip.Addr) bool {
	return p.taken < p.max && (!client.IsValid() || p.held[client] < p.max-p.taken)
}

func (p *nodePool) take(client netip.Addr) {
	p.taken++
	if client.IsValid() {
		if p.held == nil {
			p.held = map[netip.Addr]int{}
		}
		p.held[client]++
	}
}

// acquire takes a place on host for client (invalid: no per-client share),
// waiting at most *wait, and takes the time it waited off *wait: a request
// that tries several busy nodes waits poolQueueTimeout in all, not once per
// node.
func (u *Upstreams) acquire(ctx context.Context, host string, client netip.Addr, wait *time.Duration) (slot, bool) {
	return u.acquireOr(ctx, host, client, wait, false)
}

// acquireOr is acquire; with moveOn (a next node may take the request) a
// client refused only its share here (places free for others) is refused
// at once: the next node may have room, and waiting here would spend the
// whole queue time on the node it may not use.
func (u *Upstreams) acquireOr(ctx context.Context, host string, client netip.Addr, wait *time.Duration, moveOn bool) (slot, bool) {
	p, ok := u.pools.m.Load(host)
	if !ok {
		p, _ = u.pools.m.LoadOrStore(host, &nodePool{max: u.maxConns})
	}
	p.mu.Lock()
	if p.mayTake(client) {
		p.take(client)
		p.mu.Unlock()
		return slot{p, client}, true
	}
	if *wait <= 0 || moveOn && p.taken < p.max {
		p.mu.Unlock()
		return slot{}, false
	}
	w := &poolWaiter{client: client, ready: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	start := time.Now()
	defer func() { *wait -= time.Since(start) }()
	t := time.NewTimer(*wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return slot{p, client}, true
	case <-t.C:
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.granted { // as the wait ended: the place is this request's
		return slot{p, client}, true
	}
	p.waiters = slices.DeleteFunc(p.waiters, func(x *poolWaiter) bool { return x == w })
	return slot{}, false
}

// othersOnly reports whether host has places free, for other clients
// only: a request just refused was refused its client's share.
func (u *Upstreams) othersOnly(host string) bool {
	p, ok := u.pools.m.Load(host)
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.taken < p.max
}

// release gives the place back, to the first waiters that may take it;
// once per successful acquire.
func (s slot) release() {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.taken--
	if c := s.client; c.IsValid() {
		if p.held[c] <= 1 {
			delete(p.held, c)
		} else {
			p.held[c]--
		}
	}
	if len(p.waiters) == 0 {
		return
	}
	p.waiters = slices.DeleteFunc(p.waiters, func(w *poolWaiter) bool {
		if !p.mayTake(w.client) {
			return false
		}
		p.take(w.client)
		w.granted = true
		close(w.ready)
		return true
	})
}
