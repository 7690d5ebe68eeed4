package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexmux/nexmux/internal/errlist"
	"github.com/nexmux/nexmux/internal/logtext"
)

// Spec is a validated node list, as a configuration gives it.
type Spec struct {
	IDs     []string // node ids, in the order given
	Scheme  string
	CtxPath string
	Drain   []string // ids of nodes to drain
}

// ErrNotANode is ParseSpec's problem of a drained node that is none of the
// --upstream ones: a config file that could not be read may list it.
var ErrNotANode = errors.New("not one of the --upstream nodes")

// ParseSpec validates the --upstream and --drain-upstream URLs: every
// node has the same scheme and context path, and every drained node is one
// of them. All problems are returned at once.
func ParseSpec(upstreams, drain []string) (*Spec, error) {
	var errs []error
	if len(upstreams) == 0 {
		return nil, errors.New("upstream: at least one Nexus base URL is needed")
	}
	s := &Spec{}
	seen := map[string]bool{}
	// first is the first valid node, whose scheme and context path the
	// others must have: an entry refused on its own set neither.
	first := ""
	for _, raw := range upstreams {
		id, scheme, _, ctx, err := Normalise(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream %q: %v", shown(raw), err))
			continue
		}
		if s.Scheme == "" {
			s.Scheme, s.CtxPath, first = scheme, ctx, raw
		} else if scheme != s.Scheme || ctx != s.CtxPath {
			errs = append(errs, fmt.Errorf("upstream %q: every node must have the scheme and context path of %q", shown(raw), shown(first)))
			continue
		}
		if seen[id] {
			errs = append(errs, fmt.Errorf("upstream %q: listed twice (as %s)", shown(raw), id))
			continue
		}
		seen[id] = true
		s.IDs = append(s.IDs, id)
	}
	for _, raw := range drain {
		id, _, _, _, err := Normalise(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("drain-upstream %q: %v", shown(raw), err))
			continue
		}
		if !seen[id] {
			errs = append(errs, fmt.Errorf("drain-upstream %q: %w", shown(raw), ErrNotANode))
			continue
		}
		s.Drain = append(s.Drain, id)
	}
	if len(s.IDs) > 0 && !slices.ContainsFunc(s.IDs, func(id string) bool { return !slices.Contains(s.Drain, id) }) {
		// Nothing would take new reads or uploads: every request 503 and
		// /readyz failing. A reload of it is refused, the old list serving.
		errs = append(errs, errors.New("drain-upstream: every --upstream node is drained, so none would take new reads or uploads; undrain one"))
	}
	if err := errlist.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// shown is raw as an error names it: password and query hidden. Such a URL
// is refused, but the refusal is printed, and logged on a refused reload.
func shown(raw string) string {
	p, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (p.User == nil && strings.Contains(raw, "@")) {
		// Unparsed, or parsed with the credentials in its opaque part or
		// path ("admin:pw@nexus:8081" has the scheme "admin"), where
		// Redacted does not look.
		return HideUserinfo(raw)
	}
	if p.RawQuery != "" {
		p.RawQuery = "xxxxx"
	}
	return p.Redacted()
}

// HideUserinfo is a URL that did not parse as one, or parsed with its
// credentials where url.URL does not see them ("admin:pw@nexus:8081" has
// the scheme "admin"), with everything between its "scheme://" or leading
// "//" (if any) and its last '@' hidden, and its query too: user, password
// or token may hold '/', '?' or '#' unencoded.
func HideUserinfo(raw string) string {
	start, at := UserinfoSpan(raw)
	if at < 0 {
		return raw
	}
	rest := raw[at+1:]
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		rest = rest[:q+1] + "xxxxx"
	}
	return raw[:start] + "xxxxx@" + rest
}

// UserinfoSpan is where raw's userinfo lies, raw[start:at], as
// HideUserinfo hides it: after its "scheme://" or leading "//" (if any),
// up to its last '@'; at is -1 without one.
func UserinfoSpan(raw string) (start, at int) {
	at = strings.LastIndex(raw, "@")
	if at < 0 {
		return 0, -1
	}
	// A scheme comes first: a ':' or '@' before a "://" ("u:p@://@h",
	// "u:p://x@h") makes it part of the userinfo.
	if sep := strings.Index(raw, "://"); sep >= 0 && sep < at && !strings.ContainsAny(raw[:sep], ":@") {
		return sep + 3, at
	}
	if strings.HasPrefix(raw, "//") {
		// A URL's part without its scheme (a problem quoting what
		// follows "http:"): its "//" is no credential.
		return 2, at
	}
	return 0, at
}

// Set is the live node set with its health table. Its methods are safe for
// concurrent use; Update swaps the node list on reload.
type Set struct {
	scheme  string
	ctxPath string
	log     *slog.Logger

	mu      sync.RWMutex
	nodes   []*Node  // sorted by id
	removed []*Node  // dropped by reload, finishing their requests
	key     []byte   // affinity HMAC key
	keyFile bool     // key from --affinity-secret-file
	oldKeys []oldKey // derived keys of earlier node lists, still accepted

	// live is s.nodes for Pick, read without the lock (set with it).
	live     atomic.Pointer[[]*Node]
	stats    Stats
	failOpen atomic.Bool // logged once per episode
	probeMu  sync.Mutex
	prober   *prober
	// now is time.Now; a test of the ejection backoff sets a clock of its
	// own, per set, so probes a finished test left running never read it.
	now func() time.Time
}

// NewSet builds the set of spec; the probes start with Start.
func NewSet(spec *Spec, log *slog.Logger) *Set {
	if log == nil {
		log = slog.Default()
	}
	s := &Set{scheme: spec.Scheme, ctxPath: spec.CtxPath, log: log, now: time.Now}
	s.stats.init()
	for _, id := range spec.IDs {
		_, scheme, host, _, _ := Normalise(id)
		s.nodes = append(s.nodes, newNode(id, scheme, host, true))
	}
	sort.Slice(s.nodes, func(i, j int) bool { return s.nodes[i].ID < s.nodes[j].ID })
	// Its own copy of the slice header: Update reassigns s.nodes while
	// Pick reads *live without the lock.
	live := s.nodes
	s.live.Store(&live)
	// Not setDrain: nothing changed, and every configuration build (check,
	// each reload) makes a set whose logger is not the daemon's yet.
	for _, n := range s.nodes {
		n.draining = slices.Contains(spec.Drain, n.ID)
	}
	s.key = derivedKey(s.nodes)
	return s
}

// SetLogger sets where node state changes are logged.
func (s *Set) SetLogger(log *slog.Logger) {
	s.mu.Lock()
	s.log = log
	s.mu.Unlock()
}

// ContextPath is the Nexus context path ("" or e.g. "/nexus").
func (s *Set) ContextPath() string { return s.ctxPath }

// Nodes returns the current nodes, sorted by id.
func (s *Set) Nodes() []*Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.nodes)
}

// withRemoved lists the current nodes, then those a reload removed that
// are still finishing their requests.
func (s *Set) withRemoved() []*Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append(slices.Clone(s.nodes), s.removed...)
}

// Lone returns the set's one node when there is no other, a node a reload
// removed and still draining included: it holds every upload session.
func (s *Set) Lone() *Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.nodes) == 1 && len(s.removed) == 0 {
		return s.nodes[0]
	}
	return nil
}

// ByHost finds a current or removed node by its host:port.
func (s *Set) ByHost(host string) *Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, n := range s.nodes {
		if n.Host == host {
			return n
		}
	}
	for _, n := range s.removed {
		if n.Host == host {
			return n
		}
	}
	return nil
}

func (s *Set) setDrain(ids []string) {
	for _, n := range s.nodes {
		n.mu.Lock()
		was := n.draining
		n.draining = slices.Contains(ids, n.ID)
		n.mu.Unlock()
		if was != n.draining {
			s.log.Info("upstream drain", "node", n.Host, "draining", n.draining)
		}
	}
}

// CheckUpdate refuses a node list that Update cannot apply: one with
// another scheme or context path, which the running proxy is built on.
func (s *Set) CheckUpdate(spec *Spec) error {
	if spec.Scheme == s.scheme && spec.CtxPath == s.ctxPath {
		return nil
	}
	base := func(scheme, ctx string) string {
		if ctx == "" {
			return scheme + " without a context path"
		}
		return scheme + " with context path " + ctx
	}
	return fmt.Errorf("upstream: a reload cannot change the scheme or context path (needs a restart): running %s, new %s",
		base(s.scheme, s.ctxPath), base(spec.Scheme, spec.CtxPath))
}

// Update applies a reloaded node list: new nodes join once their probes
// pass, removed nodes stop taking new requests and finish the ones they
// have (they are drained, not cut), drained nodes take no new reads or
// upload sessions.
func (s *Set) Update(spec *Spec) error {
	if err := s.CheckUpdate(spec); err != nil {
		return err
	}
	s.mu.Lock()
	old := map[string]*Node{}
	for _, n := range s.nodes {
		old[n.ID] = n
	}
	var nodes []*Node
	for _, id := range spec.IDs {
		if n := old[id]; n != nil {
			nodes = append(nodes, n)
			delete(old, id)
			continue
		}
		if i := slices.IndexFunc(s.removed, func(n *Node) bool { return n.ID == id }); i >= 0 {
			// Removed, then listed again: it joins again after its probes.
			n := s.removed[i]
			// A new slice: Table and Askable read the old one unlocked.
			s.removed = slices.Concat(s.removed[:i], s.removed[i+1:])
			n.removedAt = time.Time{}
			n.mu.Lock()
			n.joined, n.pendingN = false, 0
			n.mu.Unlock()
			nodes = append(nodes, n)
			continue
		}
		_, scheme, host, _, _ := Normalise(id)
		nodes = append(nodes, newNode(id, scheme, host, false))
		s.log.Info("upstream node added; joins after its probes pass", "node", host)
	}
	for _, n := range old {
		n.mu.Lock()
		n.draining = true
		n.mu.Unlock()
		s.log.Info("upstream node removed; draining it", "node", n.Host)
		n.removedAt = s.now()
		s.removed = append(slices.Clip(s.removed), n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	s.nodes = nodes
	s.live.Store(&nodes)
	if !s.keyFile {
		s.rekeyLocked(derivedKey(nodes))
	}
	s.setDrain(spec.Drain)
	s.joinIfNoneServes(nodes)
	s.mu.Unlock()
	if p := s.currentProber(); p != nil {
		p.kick()
	}
	return nil
}

// joinIfNoneServes takes the nodes that have not joined as the first
// configuration's are taken, writable until a probe or a refused connection
// says otherwise, when no listed node could serve a read (every node
// replaced at once, or the others drained or down): waiting for their
// probes would answer every request 503 meanwhile. The caller holds s.mu.
func (s *Set) joinIfNoneServes(nodes []*Node) {
	t := s.now()
	for _, n := range nodes {
		n.mu.Lock()
		ok := n.usable(t, false)
		n.mu.Unlock()
		if ok {
			return
		}
	}
	for _, n := range nodes {
		n.mu.Lock()
		if !n.joined {
			n.joined, n.reachable = true, true
			n.setState(Writable, t)
			n.pending, n.pendingN = Writable, 0
			s.log.Info("upstream node joined at once: no listed node could serve", "node", n.Host)
		}
		n.mu.Unlock()
	}
}

// forgetRemovedAfter is how long a node removed by reload is still known:
// the uploads tagged for it may finish there, as tags of an old derived key
// still verify for keyGrace. After that, and once nothing is in flight on
// it, it is forgotten: no upload question (with a client's credentials)
// goes to a host that is no longer configured.
const forgetRemovedAfter = keyGrace

// forgetRemoved drops the removed nodes forgetRemovedAfter has passed for.
func (s *Set) forgetRemoved() {
	t := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []*Node
	for _, n := range s.removed {
		if t.Sub(n.removedAt) >= forgetRemovedAfter && n.inFlight.Load() == 0 {
			s.log.Info("upstream node removed by reload is forgotten", "node", n.Host)
			continue
		}
		keep = append(keep, n)
	}
	if len(keep) != len(s.removed) {
		s.removed = keep
	}
}

// ReportConnectFailure marks a node down at once: a refused connection or
// a connect timeout on real traffic.
func (s *Set) ReportConnectFailure(n *Node, err error) {
	t := s.now()
	n.mu.Lock()
	changed := n.setState(Down, t)
	n.pending, n.pendingN = Down, 0
	n.reachable = false
	why := logtext.Bound(err.Error())
	n.lastErr, n.lastErrAt = why, t
	n.mu.Unlock()
	if changed {
		s.log.Warn("upstream node down", "node", n.Host, "err", why)
	}
}

// ReportAnswer is ReportResult ok for an answer with status code. Only a
// 2xx or 3xx shows the node serving, and so sets aside a probe that timed
// out meanwhile: a wedged Nexus still answers 401 challenges and 500s.
func (s *Set) ReportAnswer(n *Node, code int) {
	s.CountAnswer(n, code)
	s.ReportResult(n, true, "")
}

// CountAnswer is ReportAnswer without ending the node's run of failures:
// for a blob's headers, whose body may still break (then the break counts,
// else ReportResult ok follows at the body's end).
func (s *Set) CountAnswer(n *Node, code int) {
	if code >= 200 && code < 400 {
		n.answered.Add(1)
	}
}

// ReportResult feeds the passive health check with the outcome of a
// request under /repository/: ok false for a transport error or a
// 502/503/504. Failures that were the client's fault are not reported.
func (s *Set) ReportResult(n *Node, ok bool, why string) {
	if ok {
		n.mu.Lock()
		n.fails = 0
		n.mu.Unlock()
		return
	}
	t := s.now()
	why = logtext.Bound(why)
	n.mu.Lock()
	n.lastErr, n.lastErrAt = why, t
	if t.Before(n.ejectedUntil) {
		// Not counted while out: those failures are what ejected it, and
		// it comes back with a fresh count (as Envoy readmits a host),
		// not ejected again by its first failure.
		n.mu.Unlock()
		return
	}
	n.fails++
	if n.fails < ejectAfter {
		n.mu.Unlock()
		return
	}
	n.fails = 0
	switch {
	case n.ejectFor == 0 || !n.backAt.IsZero() && t.Sub(n.backAt) > ejectMemory:
		n.ejectFor = ejectBase
	default:
		n.ejectFor = min(2*n.ejectFor, ejectMax)
	}
	n.ejectedUntil = t.Add(n.ejectFor)
	n.backAt = n.ejectedUntil
	d := n.ejectFor
	n.mu.Unlock()
	s.log.Warn("upstream node ejected", "node", n.Host, "for", d, "err", why)
}

// OtherUsable reports whether a node other than n serves reads now (write:
// takes writes): passive ejection must not take out the last node that
// serves what the request asked for.
func (s *Set) OtherUsable(n *Node, write bool) bool {
	t := s.now()
	for _, o := range *s.live.Load() {
		if o == n {
			continue
		}
		o.mu.Lock()
		ok := o.usable(t, write)
		o.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// OtherServes reports whether a node other than n serves reads (write:
// takes writes), passive ejection aside (Pick falls back on ejected nodes
// when no other serves): somewhere a download that n stops serving can
// resume, or a client whose request n stops serving can retry.
func (s *Set) OtherServes(n *Node, write bool) bool {
	for _, o := range *s.live.Load() {
		if o == n {
			continue
		}
		o.mu.Lock()
		ok := o.servesBarEjection(write)
		o.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

// Readable reports whether at least one node serves reads (writable: at
// least one serves writes), ejected or not (as Pick), for /readyz.
func (s *Set) Readable(write bool) (bool, string) {
	// A lone node only: with a removed one still draining, the
	// background rounds probe both, and a refresh would double them.
	if p := s.currentProber(); p != nil && s.Lone() != nil {
		p.refresh()
	}
	t := s.now()
	var why []string
	for _, n := range s.Nodes() {
		n.mu.Lock()
		// Ejection steers requests, and Pick falls back on an ejected
		// node when no other serves: it is no reason not to be ready.
		if n.servesBarEjection(write) {
			n.mu.Unlock()
			return true, ""
		}
		reason := n.Host + ": " + n.state.String()
		switch {
		case n.draining:
			reason += ", draining"
		case t.Before(n.ejectedUntil):
			reason += ", ejected for " + n.ejectedUntil.Sub(t).Round(time.Second).String()
		case !n.joined:
			reason += ", not yet joined (waiting for its probes)"
		}
		if n.lastErr != "" {
			reason += " " + n.lastErr
		}
		n.mu.Unlock()
		why = append(why, reason)
	}
	return false, strings.Join(why, "; ")
}

// rendezvous scores node id for key: the highest score wins.
func rendezvous(id, key string) uint64 {
	// FNV-1a of id, 0, key, written out so nothing is allocated; the
	// values are those of hash/fnv's New64a (replicas of other versions
	// must agree on every blob's node).
	const prime = 1099511628211
	x := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		x ^= uint64(id[i])
		x *= prime
	}
	x *= prime // ^= 0
	for i := 0; i < len(key); i++ {
		x ^= uint64(key[i])
		x *= prime
	}
	// fnv's low bits mix poorly for similar keys: finish with splitmix64.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
