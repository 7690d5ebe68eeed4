// Package upstream is the set of Nexus nodes nexmux sends requests to: node
// identity, the health table (active probes and passive ejection), node
// selection for reads and writes, and the upload affinity tag. It knows
// nothing of HTTP proxying; l7 asks it where a request goes and reports back
// how that went.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexmux/nexmux/route"
)

// State is a node's health as the probes see it.
type State int

const (
	// Down: the node serves nothing (refused, timed out, status not 200).
	Down State = iota
	// ReadOnly: status 200, status/writable 503 (frozen, maintenance).
	ReadOnly
	// Writable: serves reads and writes.
	Writable
)

func (s State) String() string {
	switch s {
	case ReadOnly:
		return "read-only"
	case Writable:
		return "writable"
	}
	return "down"
}

// States lists every state, for metrics.
var States = []State{Down, ReadOnly, Writable}

// Passive ejection figures (README "HA"): ejectAfter failures in a row
// eject a node for ejectBase; a node ejected again within ejectMemory of
// coming back stays out twice as long as the time before, up to ejectMax.
const (
	ejectAfter  = 5
	ejectBase   = 10 * time.Second
	ejectMax    = 160 * time.Second
	ejectMemory = 60 * time.Second
)

// Node is one Nexus node.
type Node struct {
	// ID is the normalised base URL ("http://nexus-0.nexus:8081/nexus"):
	// replicas that list the same nodes in any order agree on it.
	ID string
	// Scheme and Host (host:port, the metrics label) address the node.
	Scheme, Host string

	inFlight atomic.Int64
	latency  atomic.Int64 // moving average of time to headers, ns
	sampled  atomic.Int64 // when latency last took a sample, ns since clockBase
	// answered counts real requests' 2xx/3xx answers: a count, not a
	// time, so a wall clock stepped back cannot date old answers later.
	answered atomic.Int64
	// setAside counts probes that were no verdict, by reason (asideBusy,
	// asideLocal), for metrics.
	setAside [2]atomic.Uint64
	// lateProbe: a status probe's answer is still awaited past its
	// verdict.
	lateProbe atomic.Bool

	mu        sync.Mutex
	state     State
	since     time.Time
	lastErr   string
	lastErrAt time.Time // when lastErr happened
	pending   State     // state the last probe saw, not yet confirmed
	pendingN  int       // agreeing probes seen for pending
	reachable bool      // the last probe got an HTTP answer (fail open)
	lateAt    time.Time // when a status probe last answered 200 after its verdict
	unprobed  bool      // the last probe was no verdict (not sent, or busy)
	joined    bool      // passed its probes at least once (nodes added by reload)
	draining  bool

	removedAt time.Time // when a reload removed it (guarded by the Set's mu)

	fails        int       // passive failures in a row
	ejectedUntil time.Time // passive ejection
	ejectFor     time.Duration
	backAt       time.Time // when the last ejection ended

	// alive is cancelled when the node goes down, so requests still
	// waiting for its headers move on at once.
	alive  context.Context
	cancel context.CancelFunc
}

// Normalise returns the node id of a base URL, its scheme, host:port and
// context path.
func Normalise(raw string) (id, scheme, host, ctxPath string, err error) {
	p, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		// Without the URL, which may hold a password: callers name it.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		if fixed, ok := escapedZone(raw); ok {
			// Hidden as the problem's quote of raw is (whole userinfo),
			// not as a URL that parses (Redacted keeps the user name).
			err = fmt.Errorf("%v: a zone in a URL is written %%25ZONE: %s", err, HideUserinfo(strings.TrimSpace(fixed)))
		}
		return "", "", "", "", err
	}
	// Every problem of the URL at once: a fix of one must not only bring
	// the next to light.
	var bad []string
	scheme = strings.ToLower(p.Scheme)
	if scheme != "http" && scheme != "https" {
		bad = append(bad, "scheme must be http or https")
	}
	if p.Hostname() == "" {
		bad = append(bad, "no host")
	} else if why := route.URLHostProblem(p.Hostname()); why != "" {
		// The dialer takes the host as url.Parse gives it: caught here,
		// not at the first dial ("lookup 127.0.0.01: no such host").
		bad = append(bad, why)
	}
	if p.RawQuery != "" || p.Fragment != "" || p.User != nil || p.Opaque != "" || p.ForceQuery {
		bad = append(bad, "no query, fragment or credentials allowed")
	}
	if why := badContextPath(p); why != "" {
		bad = append(bad, why)
	}
	h, port := strings.ToLower(strings.TrimSuffix(p.Hostname(), ".")), p.Port()
	if a, err := netip.ParseAddr(p.Hostname()); err == nil {
		// One address, one id however it is written ("[0:0::1]" is
		// "[::1]"; Go dials "[::ffff:10.0.0.5]" as 10.0.0.5), or
		// replicas would derive different tag keys. A zone keeps its
		// case: interface names are case-sensitive.
		h = a.Unmap().String()
	}
	if port != "" {
		// url.Parse checks only that a port is digits: 0 and 99999 would
		// fail at the first dial instead of at start.
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			bad = append(bad, fmt.Sprintf("port %s is not 1-65535", port))
		} else if port[0] == '0' {
			// ":08081" would give the node another id than ":8081"
			// gives it on a replica (upload affinity tags).
			bad = append(bad, fmt.Sprintf("port %s: write it without a leading zero", port))
		}
	}
	if len(bad) > 0 {
		return "", "", "", "", errors.New(strings.Join(bad, "; "))
	}
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	host = net.JoinHostPort(h, port)
	ctxPath = normalEscapes(strings.TrimRight(p.EscapedPath(), "/"))
	return Origin(scheme, host) + ctxPath, scheme, host, ctxPath, nil
}

// normalEscapes is RFC 3986's normal form of an escaped path (6.2.2.1,
// 6.2.2.2): unreserved characters unescaped, other escapes in upper-case
// hex. "/%6Eexus" is "/nexus": one context path and one node id however
// a node's URL spells it, and the form Nexus names in its Locations.
func normalEscapes(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+2 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		v, err := strconv.ParseUint(p[i+1:i+3], 16, 8)
		if err != nil {
			b.WriteByte(p[i])
			continue
		}
		if c := byte(v); unreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString(strings.ToUpper(p[i : i+3]))
		}
		i += 2
	}
	return b.String()
}

// unreserved is RFC 3986's unreserved set: its escapes mean the character.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// Origin is "scheme://host" as a URL writes it: an IPv6 zone's '%' as
// "%25" (RFC 6874), so the text parses back to host (which url.URL and the
// dialer take with a bare '%').
func Origin(scheme, host string) string {
	return (&url.URL{Scheme: scheme, Host: host}).String()
}

func newNode(id, scheme, host string, joined bool) *Node {
	n := &Node{ID: id, Scheme: scheme, Host: host, since: time.Now(), joined: joined}
	// The nodes of the first configuration start writable: traffic flows
	// before the first probe answers, and a refused connection or the
	// probes correct it. Nodes added by reload join after their probes.
	if joined {
		n.state, n.pending = Writable, Writable
	}
	n.reachable = true
	n.alive, n.cancel = context.WithCancel(context.Background())
	return n
}

// Alive is cancelled when the node is found down.
func (n *Node) Alive() context.Context {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.alive
}

// State returns the node's probed state.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// setState changes the state; the caller holds n.mu.
func (n *Node) setState(s State, now time.Time) bool {
	if n.state == s {
		return false
	}
	n.state, n.since = s, now
	if s == Down {
		n.cancel()
	} else if n.alive.Err() != nil {
		n.alive, n.cancel = context.WithCancel(context.Background())
	}
	return true
}

// usable reports whether new requests may go to the node for reads
// (write: only writable nodes); the caller holds n.mu.
func (n *Node) usable(now time.Time, write bool) bool {
	return !now.Before(n.ejectedUntil) && n.servesBarEjection(write)
}

// servesBarEjection is usable leaving a passive ejection aside: the node
// Pick falls back on when every node it would use is ejected or down. The
// caller holds n.mu.
func (n *Node) servesBarEjection(write bool) bool {
	if !n.joined || n.draining {
		return false
	}
	if write {
		return n.state == Writable
	}
	return n.state != Down
}

// InFlight is the number of requests the node is serving.
func (n *Node) InFlight() int64 { return n.inFlight.Load() }

// Begin counts a request sent to the node; the returned func ends it.
func (n *Node) Begin() func() {
	n.Start()
	var once sync.Once
	return func() { once.Do(n.End) }
}

// Start counts a request sent to the node; End, called once for it, ends
// it (Begin without its closure, for the per-request path).
func (n *Node) Start() { n.inFlight.Add(1) }

// End ends a request Start counted.
func (n *Node) End() { n.inFlight.Add(-1) }

// latencyHalfLife: a time-to-headers average that no sample refreshes
// halves every 5 s. Least-loaded reads are drawn with weight 1/cost, so a
// node that was slow once (a GC pause, a stall the whole cluster shared)
// gets almost none of them, and without decay its average would stay
// stale for as long as no read comes to correct it; a node still slow
// takes a sample again when its weight has grown and drops back.
const latencyHalfLife = 5 * time.Second

// clockBase dates latency samples on the monotonic clock.
var clockBase = time.Now()

// decayed is the average lat (ns) as it stands age ns after its sample.
func decayed(lat, age int64) int64 {
	if age <= 0 || lat == 0 {
		return lat
	}
	return int64(float64(lat) * math.Exp2(-float64(age)/float64(latencyHalfLife)))
}

// ObserveLatency feeds the time to the response headers into the node's
// moving average (1/8 weight for the newest sample, the average first
// decayed for the time since its last sample).
func (n *Node) ObserveLatency(d time.Duration) {
	n.observeLatency(d, int64(time.Since(clockBase)))
}

// ObserveSince is ObserveLatency of the time since start, with one clock
// read for both the sample and its date: it runs for every answer.
func (n *Node) ObserveSince(start time.Time) {
	now := time.Now()
	n.observeLatency(now.Sub(start), int64(now.Sub(clockBase)))
}

func (n *Node) observeLatency(d time.Duration, at int64) {
	for {
		old := n.latency.Load()
		nw := int64(d)
		if old != 0 {
			cur := decayed(old, at-n.sampled.Load())
			nw = cur + (int64(d)-cur)/8
		}
		if n.latency.CompareAndSwap(old, nw) {
			n.sampled.Store(at)
			return
		}
	}
}

// Latency is the node's moving average of time to response headers, as
// it stands now.
func (n *Node) Latency() time.Duration { return time.Duration(n.latencyAt(time.Now())) }

func (n *Node) latencyAt(t time.Time) int64 {
	return decayed(n.latency.Load(), int64(t.Sub(clockBase))-n.sampled.Load())
}

// cost orders nodes for least-loaded reads at t: requests in flight
// weighted by how slow the node answers, so a slow node gets fewer of them.
func (n *Node) cost(t time.Time) float64 {
	lat := int64(time.Millisecond) // the floor: loopback-fast nodes are equals
	if raw := n.latency.Load(); raw > lat {
		lat = max(lat, decayed(raw, int64(t.Sub(clockBase))-n.sampled.Load()))
	}
	return float64(n.inFlight.Load()+1) * float64(lat)
}

// badContextPath refuses a context path Nexus and nexmux would read
// differently: dot segments ("/nexus/../service" reaches the REST API),
// encoded slashes or dots, and empty segments.
func badContextPath(p *url.URL) string {
	raw := strings.TrimRight(p.EscapedPath(), "/")
	if raw == "" {
		return ""
	}
	for _, seg := range strings.Split(strings.TrimPrefix(raw, "/"), "/") {
		dec, err := url.PathUnescape(seg)
		switch {
		case err != nil:
			return "context path: " + err.Error()
		case dec == "." || dec == "..":
			return "context path " + raw + " has a dot segment"
		case dec == "":
			return "context path " + raw + " has an empty segment"
		case dec != seg && strings.ContainsAny(dec, "/.;\\"):
			return "context path " + raw + " encodes a separator"
		case strings.Contains(dec, ";"):
			return "context path " + raw + " has a ';' parameter"
		}
	}
	return ""
}

// escapedZone is raw with the bare "%" of its bracketed IPv6 zone written
// "%25", as a URL needs (HOST:PORT settings take it bare), when that makes
// it parse. The "%" is looked for inside the brackets: a password before
// them may have escapes of its own ("p%40ss").
func escapedZone(raw string) (string, bool) {
	open := strings.Index(raw, "[")
	if open < 0 {
		return "", false
	}
	end := strings.Index(raw[open:], "]")
	if end < 0 {
		return "", false
	}
	pct := strings.Index(raw[open:open+end], "%")
	if pct < 0 {
		return "", false
	}
	pct += open
	if strings.HasPrefix(raw[pct:], "%25") {
		return "", false
	}
	fixed := raw[:pct] + "%25" + raw[pct+1:]
	if _, err := url.Parse(strings.TrimSpace(fixed)); err != nil {
		return "", false
	}
	return fixed, true
}

// answeredLate reports whether a status probe answered 200 after its
// verdict lately: the node is slow, not frozen, and worth failing open
// onto. The caller holds n.mu.
func (n *Node) answeredLate(t time.Time) bool {
	return !n.lateAt.IsZero() && t.Sub(n.lateAt) < lateFresh
}
