package upstream

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
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
// "repository@digest" for ReadDigest.
func (s *Set) Pick(kind Kind, key string) ([]*Node, error) {
	t := now()
	s.mu.RLock()
	nodes := s.nodes
	s.mu.RUnlock()
	if len(nodes) == 1 {
		// One node: there is no choice to make, and no other node to
		// spare it; Nexus answers for itself.
		return nodes, nil
	}
	out := make([]*Node, 0, len(nodes))
	readable := false
	for _, n := range nodes {
		n.mu.Lock()
		ok := n.usable(t, kind == Write)
		readable = readable || n.usable(t, false)
		n.mu.Unlock()
		if ok {
			out = append(out, n)
		}
	}
	if len(out) > 0 {
		s.endFailOpen()
		order(out, kind, key)
		return out, nil
	}
	if readable {
		return nil, ErrNoneWritable
	}
	// Fail open: every node fails its probes, but those whose last answer
	// was HTTP may still serve /repository/ (a status endpoint broken on
	// its own). Never nodes that refuse connections or never answer.
	for _, n := range nodes {
		n.mu.Lock()
		ok := n.joined && !n.draining && n.reachable && !t.Before(n.ejectedUntil)
		n.mu.Unlock()
		if ok {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, ErrAllDown
	}
	s.startFailOpen(out)
	order(out, kind, key)
	return out, nil
}

func order(ns []*Node, kind Kind, key string) {
	if len(ns) < 2 {
		return
	}
	if kind == ReadDigest {
		sort.Slice(ns, func(i, j int) bool { return rendezvous(ns[i].ID, key) > rendezvous(ns[j].ID, key) })
		return
	}
	costs := make(map[*Node]float64, len(ns))
	var sum float64
	for _, n := range ns {
		costs[n] = n.cost()
		sum += 1 / costs[n]
	}
	sort.SliceStable(ns, func(i, j int) bool { return costs[ns[i]] < costs[ns[j]] })
	// The first choice is drawn with weight 1/cost: every readable node
	// gets reads, a slower or busier one fewer. The rest stay cheapest
	// first, for failover.
	x := rand.Float64() * sum
	for i, n := range ns {
		if x -= 1 / costs[n]; x <= 0 || i == len(ns)-1 {
			copy(ns[1:i+1], ns[:i])
			ns[0] = n
			break
		}
	}
}

func (s *Set) startFailOpen(ns []*Node) {
	s.mu.Lock()
	first := !s.failOpen
	s.failOpen = true
	s.mu.Unlock()
	if first {
		hosts := make([]string, len(ns))
		for i, n := range ns {
			hosts[i] = n.Host
		}
		s.log.Warn("every Nexus node fails its probes; fail open to the nodes that still answer HTTP", "nodes", hosts)
	}
}

func (s *Set) endFailOpen() {
	s.mu.RLock()
	on := s.failOpen
	s.mu.RUnlock()
	if on {
		s.mu.Lock()
		s.failOpen = false
		s.mu.Unlock()
		s.log.Info("a Nexus node passes its probes again; fail open ends")
	}
}

// Tagged reports whether the node an upload tag names may serve that
// upload now: not down, not ejected. Drained and removed nodes finish
// their sessions.
func (s *Set) Tagged(n *Node) bool {
	t := now()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state != Down && !t.Before(n.ejectedUntil)
}

// Askable returns the nodes worth asking whether they know an upload
// session: every node that serves (removed ones included), or, when none
// does, those whose last answer was HTTP.
func (s *Set) Askable() []*Node {
	t := now()
	s.mu.RLock()
	all := append(slices.Clone(s.nodes), s.removed...)
	s.mu.RUnlock()
	var up, open []*Node
	for _, n := range all {
		n.mu.Lock()
		switch {
		case n.state != Down && !t.Before(n.ejectedUntil):
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
