package upstream

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Kind says what a request needs from its node.
type Kind int

const (
	// Read is a read not addressed by digest: least-loaded node.
	Read Kind = iota
	// ReadDigest is a blob GET or a manifest GET/HEAD by digest: the
	// rendezvous node of (repository, digest), so every replica sends the
	// same content to the same node and a proxy repository fetches it
	// from its remote once.
	ReadDigest
	// Write opens an upload or puts a manifest: writable nodes only.
	Write
)

var (
	// ErrNoneWritable: nodes serve reads but none takes writes.
	ErrNoneWritable = errors.New("no Nexus node accepts writes right now (read-only or maintenance)")
	// ErrAllDown: no node answers at all.
	ErrAllDown = errors.New("no Nexus node is reachable")
)

// Pick returns the nodes to try for a request, best first: the first is
// the choice, the others are where a failover goes. key is
// "repository@digest" for ReadDigest. The slice must not be modified.
func (s *Set) Pick(kind Kind, key string) ([]*Node, error) {
	nodes := *s.live.Load()
	if len(nodes) == 1 {
		// One node: there is no choice to make, and no other node to
		// spare it; Nexus answers for itself.
		return nodes, nil
	}
	return s.PickAppend(make([]*Node, 0, len(nodes)), kind, key)
}

// PickAppend is Pick appending to dst (a caller's buffer: with room for
// the nodes, choosing allocates nothing).
func (s *Set) PickAppend(dst []*Node, kind Kind, key string) ([]*Node, error) {
	nodes := *s.live.Load()
	if len(nodes) == 1 {
		return append(dst, nodes[0]), nil // as Pick
	}
	t := s.now()
	base := len(dst)
	readable := false
	for _, n := range nodes {
		n.mu.Lock()
		ok := n.usable(t, kind == Write)
		if !readable {
			readable = ok || n.usable(t, false)
		}
		n.mu.Unlock()
		if ok {
			dst = append(dst, n)
		}
	}
	if out := dst[base:]; len(out) == 0 {
		// Passive ejection steers requests to the other nodes; with none
		// left it must not refuse them all while an ejected node's probes
		// pass (one whose peer went down while it was out).
		for _, n := range nodes {
			n.mu.Lock()
			ok := n.servesBarEjection(kind == Write)
			if !readable {
				readable = ok || n.servesBarEjection(false)
			}
			n.mu.Unlock()
			if ok {
				dst = append(dst, n)
			}
		}
	}
	if out := dst[base:]; len(out) > 0 {
		if s.failOpen.Load() {
			s.endFailOpen()
		}
		order(out, kind, key, t)
		return dst, nil
	}
	if readable {
		return nil, ErrNoneWritable
	}
	// Fail open: every node fails its probes, but those whose last answer
	// was HTTP may still serve /repository/ (a status endpoint broken on
	// its own), and so may those that answer it late (a cluster slow as a
	// whole: no request reaches a down node, so nothing else could show
	// it alive). Never nodes that refuse connections or never answer.
	for _, n := range nodes {
		n.mu.Lock()
		ok := n.joined && !n.draining && (n.reachable || n.answeredLate(t)) && !t.Before(n.ejectedUntil)
		n.mu.Unlock()
		if ok {
			dst = append(dst, n)
		}
	}
	out := dst[base:]
	if len(out) == 0 {
		return nil, ErrAllDown
	}
	s.startFailOpen(out)
	order(out, kind, key, t)
	return dst, nil
}

// order sorts ns best first. Node sets are small: scores go in a stack
// array and an insertion sort keeps equal costs in id order, so ordering
// allocates nothing.
func order(ns []*Node, kind Kind, key string, t time.Time) {
	if len(ns) < 2 {
		return
	}
	if kind == ReadDigest {
		// Highest rendezvous hash first.
		var hb [8]uint64
		h := hb[:0]
		if len(ns) > len(hb) {
			h = make([]uint64, 0, len(ns))
		}
		for _, n := range ns {
			h = append(h, rendezvous(n.ID, key))
		}
		sortWith(h, ns, func(a, b uint64) bool { return a > b })
		return
	}
	var buf [8]float64
	score := buf[:0]
	if len(ns) > len(buf) {
		score = make([]float64, 0, len(ns))
	}
	var sum float64
	for _, n := range ns {
		c := n.cost(t)
		score = append(score, c)
		sum += 1 / c
	}
	sortWith(score, ns, func(a, b float64) bool { return a < b })
	// The first choice is drawn with weight 1/cost: every readable node
	// gets reads, a slower or busier one fewer. The rest stay cheapest
	// first, for failover.
	x := rand.Float64() * sum
	for i, n := range ns {
		if x -= 1 / score[i]; x <= 0 || i == len(ns)-1 {
			copy(ns[1:i+1], ns[:i])
			ns[0] = n
			break
		}
	}
}

// sortWith orders ns by their keys, keys[i] being ns[i]'s, first those
// that come first by less; equal keys keep their order. An insertion
// sort: node sets are small, and it allocates nothing.
func sortWith[K any](keys []K, ns []*Node, less func(a, b K) bool) {
	for i := 1; i < len(ns); i++ {
		for j := i; j > 0 && less(keys[j], keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
			ns[j], ns[j-1] = ns[j-1], ns[j]
		}
	}
}

func (s *Set) startFailOpen(ns []*Node) {
	if s.failOpen.Swap(true) {
		return
	}
	hosts := make([]string, len(ns))
	for i, n := range ns {
		hosts[i] = n.Host
	}
	s.log.Warn("every Nexus node fails its probes; fail open to the nodes that still answer HTTP", "nodes", hosts)
}

func (s *Set) endFailOpen() {
	if s.failOpen.Swap(false) {
		s.log.Info("a Nexus node passes its probes again; fail open ends")
	}
}

// Size is the number of current nodes, read without a lock or a copy
// (Nodes clones): for a request's path.
func (s *Set) Size() int { return len(*s.live.Load()) }

// Ejected returns the nodes passive ejection alone keeps from a request of
// kind (joined, not draining, up, and writable for a write), best first:
// where a blob download that broke on the nodes Pick gave resumes rather
// than being cut, as Pick falls back on them when no other node serves.
func (s *Set) Ejected(kind Kind, key string) []*Node {
	t := s.now()
	var out []*Node
	for _, n := range *s.live.Load() {
		n.mu.Lock()
		if t.Before(n.ejectedUntil) && n.servesBarEjection(kind == Write) {
			out = append(out, n)
		}
		n.mu.Unlock()
	}
	order(out, kind, key, t)
	return out
}

// Tagged reports whether the node an upload tag names may serve that
// upload now (serves): not down. Drained, removed and ejected nodes finish
// their sessions: no other node holds them, and an ejection is one
// replica's view of a node the others may well be sending the same upload
// to. ejected says it is passively ejected now (its 5xx or resets).
func (s *Set) Tagged(n *Node) (serves, ejected bool) {
	t := s.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state != Down, t.Before(n.ejectedUntil)
}

// Takes reports whether n takes a new request now, as Pick would choose
// it: joined, neither draining (or removed) nor ejected, and writable for
// a write.
func (s *Set) Takes(n *Node, write bool) bool {
	t := s.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.usable(t, write)
}

// Askable returns the nodes worth asking whether they know an upload
// session: every node that is up (removed and ejected ones included), or,
// when none is, those whose last answer was HTTP.
func (s *Set) Askable() []*Node {
	all := s.withRemoved()
	var up, open []*Node
	for _, n := range all {
		n.mu.Lock()
		switch {
		case n.state != Down:
			up = append(up, n)
		case n.reachable:
			open = append(open, n)
		}
		n.mu.Unlock()
	}
	if len(up) > 0 {
		return up
	}
	return open
}
