package upstream

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats counts what the set did, for metrics.
type Stats struct {
	mu        sync.Mutex
	failovers map[[2]string]uint64 // {kind, reason}
	affinity  map[string]uint64    // result
	resumes   atomic.Uint64
	paced     atomic.Uint64 // resumes on the node whose response broke
}

func (st *Stats) init() {
	st.failovers = map[[2]string]uint64{}
	// Every series at 0 from the start: one born at 1 hides its first
	// failover from increase() and rate().
	for _, kind := range []string{"read", "write"} {
		for _, reason := range []string{"connect", "reset", "down", "status", "busy", "local"} {
			st.failovers[[2]string{kind, reason}] = 0
		}
	}
	st.affinity = map[string]uint64{}
}

// Failover counts a request moved to another node. kind is "read" or
// "write"; reason "connect", "reset", "status", "down", "busy" or "local".
func (s *Set) Failover(kind, reason string) {
	s.stats.mu.Lock()
	s.stats.failovers[[2]string{kind, reason}]++
	s.stats.mu.Unlock()
}

// Affinity counts an upload follow-up by how its node was found: hit,
// absent, tampered, asked or unknown.
func (s *Set) Affinity(result string) {
	s.stats.mu.Lock()
	s.stats.affinity[result]++
	s.stats.mu.Unlock()
}

// Resumed counts a blob download continued after its response broke;
// paced: from the same node, after a break at the client's pace.
func (s *Set) Resumed(paced bool) {
	s.stats.resumes.Add(1)
	if paced {
		s.stats.paced.Add(1)
	}
}

var (
	descState = prometheus.NewDesc("nexmux_upstream_node_state",
		"1 for the state each Nexus node is in (down, read-only, writable).", []string{"node", "state"}, nil)
	descInFlight = prometheus.NewDesc("nexmux_upstream_in_flight",
		"Requests in flight to each Nexus node.", []string{"node"}, nil)
	descFailovers = prometheus.NewDesc("nexmux_upstream_failovers_total",
		"Requests moved to another node before their response started.", []string{"kind", "reason"}, nil)
	descResumes = prometheus.NewDesc("nexmux_upstream_resumes_total",
		"Blob downloads continued after a response broke mid-stream: from another node, or from the same one after a paced break (counted in nexmux_upstream_paced_resumes_total too).", nil, nil)
	descPaced = prometheus.NewDesc("nexmux_upstream_paced_resumes_total",
		"Blob downloads continued from the node that broke them, after a response that ran at the client's pace: Nexus ended a write the slow client had not made room for (Jetty's idle timeout).", nil, nil)
	descSetAside = prometheus.NewDesc("nexmux_upstream_probes_set_aside_total",
		"Probes of each node that counted for nothing: busy (timed out while the node answered real requests) or local (nexmux's own dial failed).", []string{"node", "reason"}, nil)
	descAffinity = prometheus.NewDesc("nexmux_upload_affinity_total",
		"Upload follow-ups by how their node was found: hit, absent, tampered, asked, unknown.", []string{"result"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	ch <- descState
	ch <- descInFlight
	ch <- descFailovers
	ch <- descResumes
	ch <- descPaced
	ch <- descAffinity
	ch <- descSetAside
}

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	// Removed nodes too, as /upstreams lists them: their in-flight count
	// is how a removal's drain is followed.
	for _, n := range s.withRemoved() {
		cur := n.State()
		for _, st := range States {
			v := 0.0
			if st == cur {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, n.Host, st.String())
		}
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(n.InFlight()), n.Host)
		for i, r := range asideReasons {
			ch <- prometheus.MustNewConstMetric(descSetAside, prometheus.CounterValue, float64(n.setAside[i].Load()), n.Host, r.label)
		}
	}
	s.stats.mu.Lock()
	for k, v := range s.stats.failovers {
		ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(v), k[0], k[1])
	}
	for _, r := range []string{"hit", "absent", "tampered", "asked", "unknown"} {
		ch <- prometheus.MustNewConstMetric(descAffinity, prometheus.CounterValue, float64(s.stats.affinity[r]), r)
	}
	s.stats.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descResumes, prometheus.CounterValue, float64(s.stats.resumes.Load()))
	ch <- prometheus.MustNewConstMetric(descPaced, prometheus.CounterValue, float64(s.stats.paced.Load()))
}

// NodeInfo is one row of GET /upstreams.
type NodeInfo struct {
	Node         string    `json:"node"` // host:port
	ID           string    `json:"id"`
	State        string    `json:"state"`
	Since        time.Time `json:"since"`
	InFlight     int64     `json:"inFlight"`
	LastError    string    `json:"lastError,omitempty"`
	LastErrorAt  time.Time `json:"lastErrorAt,omitzero"` // LastError stays after recovery: when it happened
	Draining     bool      `json:"draining,omitempty"`
	Joined       bool      `json:"joined"`
	EjectedUntil time.Time `json:"ejectedUntil,omitzero"`
	Removed      bool      `json:"removed,omitempty"`
}

// Table returns the health table.
func (s *Set) Table() []NodeInfo {
	s.mu.RLock()
	nodes, removed := s.nodes, s.removed
	s.mu.RUnlock()
	var out []NodeInfo
	add := func(n *Node, rm bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		ni := NodeInfo{Node: n.Host, ID: n.ID, State: n.state.String(), Since: n.since, InFlight: n.inFlight.Load(),
			LastError: n.lastErr, LastErrorAt: n.lastErrAt, Draining: n.draining, Joined: n.joined, Removed: rm}
		if s.now().Before(n.ejectedUntil) {
			ni.EjectedUntil = n.ejectedUntil
		}
		out = append(out, ni)
	}
	for _, n := range nodes {
		add(n, false)
	}
	for _, n := range removed {
		add(n, true)
	}
	return out
}

// Handler serves the health table as JSON (GET /upstreams).
func (s *Set) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"nodes": s.Table()})
	})
}
