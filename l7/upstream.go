package l7

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// downFor is how long a node that refused a connection is skipped.
const downFor = 5 * time.Second

// Upstreams is the set of Nexus nodes behind one name (a Nexus HA cluster,
// or one node). Nodes are tried in the configured order: everyone uses the
// first node that accepts connections, so an upload session started on a
// node stays on it; a node that refuses a connection is skipped for downFor.
type Upstreams struct {
	nodes   []*url.URL
	ctxPath string
	down    []atomic.Int64 // unix nanoseconds until which node i is skipped
}

// ParseUpstreams parses base URLs such as "http://nexus:8081/nexus". All
// nodes must share scheme and context path.
func ParseUpstreams(raw []string) (*Upstreams, error) {
	if err := CheckUpstreams(raw); err != nil {
		return nil, err
	}
	u := &Upstreams{}
	for i, s := range raw {
		p, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %v", s, err)
		}
		if p.Scheme != "http" && p.Scheme != "https" {
			return nil, fmt.Errorf("upstream %q: scheme must be http or https", s)
		}
		if p.Host == "" {
			return nil, fmt.Errorf("upstream %q: no host", s)
		}
		if p.RawQuery != "" || p.Fragment != "" || p.User != nil {
			return nil, fmt.Errorf("upstream %q: no query, fragment or credentials allowed", s)
		}
		ctx := strings.TrimRight(p.EscapedPath(), "/")
		if i == 0 {
			u.ctxPath = ctx
		} else if ctx != u.ctxPath || p.Scheme != u.nodes[0].Scheme {
			return nil, fmt.Errorf("upstream %q: every node must have the scheme and context path of %q", s, u.nodes[0])
		}
		u.nodes = append(u.nodes, &url.URL{Scheme: p.Scheme, Host: p.Host})
	}
	u.down = make([]atomic.Int64, len(u.nodes))
	return u, nil
}

// ContextPath is the Nexus context path ("" or e.g. "/nexus").
func (u *Upstreams) ContextPath() string { return u.ctxPath }

// Nodes returns the nodes' scheme://host.
func (u *Upstreams) Nodes() []*url.URL { return u.nodes }

// first returns the first node not marked down (node 0 when all are).
func (u *Upstreams) first() int {
	if len(u.nodes) == 1 {
		return 0
	}
	now := time.Now().UnixNano()
	for i := range u.nodes {
		if u.down[i].Load() <= now {
			return i
		}
	}
	return 0
}

func (u *Upstreams) markDown(i int) {
	u.down[i].Store(time.Now().Add(downFor).UnixNano())
}

// failover sends a request to the next node when one refuses the
// connection. Only requests without a body move: http.Transport closes a
// request's body on failure, and a body cannot be sent twice. Uploads that
// hit a dead node fail once (503, Retry-After) and the client's retry goes
// to a live node, since the dead one is now skipped.
type failover struct {
	up   *Upstreams
	next http.RoundTripper
}

func (f failover) RoundTrip(r *http.Request) (*http.Response, error) {
	n := len(f.up.nodes)
	resp, err := f.next.RoundTrip(r)
	if err == nil || n == 1 || !refused(err) {
		return resp, err
	}
	idx := f.up.indexOf(r.URL.Host)
	f.up.markDown(idx)
	if r.Body != nil && r.Body != http.NoBody {
		return nil, err
	}
	for i := 1; i < n; i++ {
		j := (idx + i) % n
		r2 := r.Clone(r.Context())
		r2.URL.Host = f.up.nodes[j].Host
		if resp, err = f.next.RoundTrip(r2); err == nil || !refused(err) {
			return resp, err
		}
		f.up.markDown(j)
	}
	return nil, err
}

func (u *Upstreams) indexOf(host string) int {
	for i, n := range u.nodes {
		if n.Host == host {
			return i
		}
	}
	return 0
}

// refused reports a failure to connect: nothing reached the node, so trying
// another node cannot duplicate a request.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
