package l7

import (
	"context"
	"errors"
	"net"
	"net/url"
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

// refused reports a failure to connect: nothing reached the node, so trying
// another node cannot duplicate a request.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// poolSet holds one slot semaphore per node host.
type poolSet struct {
	m syncMap[string, slot]
}

// acquire takes a slot on host, waiting at most *wait, and takes the time
// it waited off *wait: a request that tries several busy nodes waits
// poolQueueTimeout in all, not once per node.
func (u *Upstreams) acquire(ctx context.Context, host string, wait *time.Duration) (slot, bool) {
	sem, ok := u.pools.m.Load(host)
	if !ok {
		sem, _ = u.pools.m.LoadOrStore(host, make(slot, u.maxConns))
	}
	select {
	case sem <- struct{}{}:
		return sem, true
	default:
	}
	if *wait <= 0 {
		return nil, false
	}
	start := time.Now()
	defer func() { *wait -= time.Since(start) }()
	t := time.NewTimer(*wait)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return sem, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

// slot is a node's --upstream-max-conns semaphore; acquire took one place.
type slot chan struct{}

// release gives the place back; once per successful acquire.
func (s slot) release() { <-s }
