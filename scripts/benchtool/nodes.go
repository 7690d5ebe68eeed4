package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Nodes compares nexmux with one --upstream node against nexmux with
// several (issue 15): blob pull throughput, and nexmux's own CPU per small
// request, where the node choice (health table, least-loaded pick) runs.
type Nodes struct {
	Count   int    `json:"count"`
	One     string `json:"one"`
	Many    string `json:"many"`
	Streams int    `json:"streams"` // concurrent pulls per repetition
	// Pull is MiB/s summed over the concurrent pulls, per repetition.
	PullOne  Series `json:"pull_one"`
	PullMany Series `json:"pull_many"`
	// Rate is HEAD manifest req/s per round; CPU is nexmux's own CPU
	// time per request over all rounds (µs).
	RateOne  Series  `json:"rate_one"`
	RateMany Series  `json:"rate_many"`
	CPUOne   float64 `json:"cpu_us_per_request_one"`
	CPUMany  float64 `json:"cpu_us_per_request_many"`
	// Served counts blob GETs per backend node (X-Bench-Node), per target:
	// proof that the reads were spread.
	Served map[string]map[string]int `json:"served"`
}

// Node-count targets (issue 15).
const (
	nodesPullMin = 1.0  // pull with N nodes ≥ this × one node
	nodesCPUMax  = 1.05 // nexmux's CPU per request with N nodes ≤ this × one node
)

// PullRatio is the median of the repetitions' ratios many ÷ one.
func (n *Nodes) PullRatio() (float64, bool) { return pairedRatio(n.PullMany, n.PullOne) }

// CPURatio is nexmux's own CPU per request, many ÷ one.
func (n *Nodes) CPURatio() (float64, bool) {
	return ratio(n.CPUMany, n.CPUOne, n.CPUMany > 0, n.CPUOne > 0)
}

// benchDigest names the i-th distinct blob of the node comparison: the
// backend serves the same bytes under any digest, and nexmux picks a
// blob's node by hashing (repository, digest), so distinct digests are
// what spreads the pulls over the nodes.
func benchDigest(i int) string {
	sum := sha256.Sum256([]byte("nexmux bench blob " + strconv.Itoa(i)))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// nodes measures one against many: Reps repetitions of NodeStreams
// concurrent pulls (the same digests for both, interleaved, every other
// repetition in reverse order), then NodeRounds rounds of the HEAD
// manifest rate with nexmux's CPU per request.
func (r *runner) nodes(ctx context.Context, one, many *target) error {
	k := max(r.s.NodeStreams, 1)
	res := &Nodes{Count: many.Nodes, One: one.Name, Many: many.Name, Streams: k, Served: map[string]map[string]int{}}
	pair := []*target{one, many}
	vals := map[string][]float64{}
	meters := map[string]*cpuMeter{}
	for rep := 0; rep < r.s.Reps; rep++ {
		order := pair
		if rep%2 == 1 {
			order = []*target{many, one}
		}
		for _, t := range order {
			conns := make([]*httpConn, k)
			for i := range conns {
				conns[i] = newHTTPConn(t, r.tls.config(t.Host, true), t.Host)
				if err := conns[i].connect(ctx); err != nil {
					return fmt.Errorf("%s: nodes pull: %w", t.Name, err)
				}
			}
			var d time.Duration
			var served []string
			var err error
			var m0, m1 cpuMark
			for try := 0; ; try++ {
				r.waitQuiet()
				m0 = r.mark(t)
				d, served, err = r.pullMany(ctx, conns, t, rep*k)
				m1 = r.mark(t)
				fg := foreign(m0, m1, t)
				if err != nil || fg <= maxForeign || r.noMoreRetries(try) {
					if err == nil && fg > maxForeign {
						r.disturbed++
					}
					break
				}
				r.retried++
				r.retryTime += m1.at.Sub(m0.at)
				log.Printf("%-16s nodes pull #%d: disturbed (other load %.2f cores); again", t.Name, rep+1, fg)
			}
			for _, c := range conns {
				c.Close()
			}
			if err != nil {
				return fmt.Errorf("%s: nodes pull: %w", t.Name, err)
			}
			if meters[t.Name] == nil {
				meters[t.Name] = &cpuMeter{}
				res.Served[t.Name] = map[string]int{}
			}
			for _, s := range served {
				res.Served[t.Name][s]++
			}
			meters[t.Name].add(m0, m1, float64(k)*float64(r.s.BlobBytes)/(1<<30))
			mibs := float64(k) * float64(r.s.BlobBytes) / (1 << 20) / d.Seconds()
			vals[t.Name] = append(vals[t.Name], mibs)
			log.Printf("%-16s nodes pull #%d: %7.0f MiB/s (%d concurrent, served by %s)", t.Name, rep+1, mibs, k, strings.Join(served, " "))
		}
	}
	res.PullOne, res.PullMany = newSeries(vals[one.Name], 0), newSeries(vals[many.Name], 0)
	r.saveCPU("nodes: pull", meters, "ms/GiB", time.Millisecond)

	s := r.s
	s.Rounds = s.NodeRounds
	rr := *r
	rr.s = s
	rate := map[string]Series{}
	rr.rounds("nodes: HEAD manifest", pair, s.Rounds, rr.rate, rate)
	r.retried, r.disturbed, r.waited = rr.retried, rr.disturbed, rr.waited
	res.RateOne, res.RateMany = rate[one.Name], rate[many.Name]
	cpu := r.res.CPU["nodes: HEAD manifest"]
	res.CPUOne, res.CPUMany = cpu[one.Name].Server, cpu[many.Name].Server
	r.res.Nodes = res
	pr, _ := res.PullRatio()
	cr, _ := res.CPURatio()
	log.Printf("nodes: pull %d nodes ÷ 1 node %.2f× (target ≥ %.2f×); nexmux CPU per request %d nodes ÷ 1 node %.3f× (%.1f vs %.1f µs; target ≤ %.2f×)",
		res.Count, pr, nodesPullMin, res.Count, cr, res.CPUMany, res.CPUOne, nodesCPUMax)
	return nil
}

// pullMany pulls a distinct blob on each connection at once and returns
// the wall time until the last one ended and which node served each.
func (r *runner) pullMany(ctx context.Context, conns []*httpConn, t *target, first int) (time.Duration, []string, error) {
	served := make([]string, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, served[i], errs[i] = r.pullBlob(ctx, c, t, t.Host, benchDigest(first+i), false)
		}()
	}
	wg.Wait()
	return time.Since(start), served, errors.Join(errs...)
}

// nodesTable renders the node-count comparison with its two ratios.
func nodesTable(res *Results) string {
	n := res.Nodes
	if n == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| nexmux upstream nodes | 1 node | %d nodes | %d ÷ 1 | target |\n|---|---:|---:|---:|---|\n", n.Count, n.Count)
	pr, _ := n.PullRatio()
	fmt.Fprintf(&b, "| blob pull, %d concurrent 1-blob pulls of distinct digests (MiB/s) | %s | %s | %.3f× (median of the repetitions' ratios) | ≥ %.2f× |\n",
		n.Streams, fmtVal(n.PullOne.Median, 0), fmtVal(n.PullMany.Median, 0), pr, nodesPullMin)
	rr, _ := pairedRatio(n.RateMany, n.RateOne)
	fmt.Fprintf(&b, "| HEAD manifest, %d keep-alive conns (req/s) | %s | %s | %.2f× | — |\n",
		res.Settings.RateConns, fmtVal(n.RateOne.Median, 0), fmtVal(n.RateMany.Median, 0), rr)
	cr, _ := n.CPURatio()
	fmt.Fprintf(&b, "| nexmux's own CPU per HEAD request (µs, lower is better) | %.1f | %.1f | %.3f× | ≤ %.2f× |\n",
		n.CPUOne, n.CPUMany, cr, nodesCPUMax)
	if s := servedText(n.Served[n.Many]); s != "" {
		fmt.Fprintf(&b, "\nBlob pulls per node with %d nodes (rendezvous hashing of repository and digest): %s.\n", n.Count, s)
	}
	return b.String()
}

// nodesText gives the node-count goals this run's evidence: how far the
// repetitions moved, and where the CPU went on each side.
func nodesText(res *Results, key string) string {
	n := res.Nodes
	if n == nil {
		return ""
	}
	switch key {
	case "nodes-pull":
		lo, hi, ok := spread(n.PullMany, n.PullOne)
		if !ok {
			return ""
		}
		t := fmt.Sprintf("In this run the repetitions' ratios ranged %.2f-%.2f×", lo, hi)
		if c := res.CPU["nodes: pull"]; c[n.One].Server > 0 && c[n.Many].Server > 0 {
			t += fmt.Sprintf("; nexmux spent %s ms of CPU per GiB pulled with %d nodes, %s with one", fmtVal(c[n.Many].Server, 0), n.Count, fmtVal(c[n.One].Server, 0))
		}
		return t + "."
	case "nodes-cpu":
		c := res.CPU["nodes: HEAD manifest"]
		one, many := c[n.One], c[n.Many]
		if one.Server == 0 || many.Server == 0 {
			return ""
		}
		who := fmt.Sprintf("%d processes each serving a share of the requests, against one serving them all", n.Count)
		if p := res.Settings.NodeProcs; p > 0 && p < n.Count {
			who = "one process serving every node's port"
		}
		return fmt.Sprintf("In this run nexmux spent %.1f µs of CPU per HEAD request with %d nodes and %.1f with one; the backends %.1f and %.1f µs "+
			"(%s), and the client %.1f and %.1f µs.",
			many.Server, n.Count, one.Server, many.Backend, one.Backend, who, many.Client, one.Client)
	}
	return ""
}

func servedText(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func nodesGoals(res *Results) []goal {
	n := res.Nodes
	if n == nil {
		return nil
	}
	pr, okP := n.PullRatio()
	cr, okC := n.CPURatio()
	return []goal{
		{What: fmt.Sprintf("blob pull with %d upstream nodes ≥ 1.0× one node", n.Count), Measured: pr, Limit: nodesPullMin, Known: okP, Key: "nodes-pull", Unit: "×3"},
		{What: fmt.Sprintf("nexmux's CPU per request with %d upstream nodes ≤ 1.05× one node", n.Count), Measured: cr, Limit: nodesCPUMax, AtMost: true, Known: okC, Key: "nodes-cpu", Unit: "×3"},
	}
}

// partialNote starts the note a merged partial run leaves.
const partialNote = "Measured again in a later partial run"

// mergeResults returns the results in path with the measurements named in
// only replaced by fresh ones: a partial run (BENCH_ONLY) updates its rows
// and keeps the rest of the last full run.
func mergeResults(path string, fresh *Results, only map[string]bool) (*Results, error) {
	old, err := readResults(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fresh, nil
	}
	if err != nil {
		return nil, err
	}
	if old.CPU == nil {
		old.CPU = map[string]map[string]CPU{}
	}
	cpuKey := map[string]func(string) bool{
		"pull":      func(k string) bool { return k == "pull" },
		"push":      func(k string) bool { return k == "push" },
		"rate":      func(k string) bool { return k == "HEAD manifest" },
		"handshake": func(k string) bool { return k == "handshake" },
		"small":     func(k string) bool { return k == "HEAD manifest" },
		"resume":    func(k string) bool { return k == "resumed handshake" },
		"routes":    func(k string) bool { return strings.HasPrefix(k, "routes: ") },
		"nodes":     func(k string) bool { return strings.HasPrefix(k, "nodes: ") },
	}
	ms := slices.Sorted(maps.Keys(only))
	for _, m := range ms {
		switch m {
		case "pull":
			old.Pull = fresh.Pull
		case "push":
			old.Push = fresh.Push
		case "rate":
			old.Rate = fresh.Rate
		case "handshake":
			old.Handshake = fresh.Handshake
		case "small":
			old.Small, old.Rate = fresh.Small, fresh.Rate
			old.Settings.SmallGenerators, old.Settings.SmallConns = fresh.Settings.SmallGenerators, fresh.Settings.SmallConns
			old.Settings.SmallRounds, old.Settings.SmallSeconds = fresh.Settings.SmallRounds, fresh.Settings.SmallSeconds
		case "resume":
			old.Resume = fresh.Resume
		case "latency":
			old.Latency = fresh.Latency
		case "idle":
			old.Idle = fresh.Idle
		case "routes":
			old.Routes = fresh.Routes
			old.Settings.RouteCount, old.Settings.RouteRounds, old.Settings.RouteSeconds = fresh.Settings.RouteCount, fresh.Settings.RouteRounds, fresh.Settings.RouteSeconds
		case "nodes":
			old.Nodes = fresh.Nodes
			old.Settings.NodeStreams, old.Settings.NodeRounds, old.Settings.NodeProcs = fresh.Settings.NodeStreams, fresh.Settings.NodeRounds, fresh.Settings.NodeProcs
		}
		if f := cpuKey[m]; f != nil {
			for k := range old.CPU {
				if f(k) {
					delete(old.CPU, k)
				}
			}
			for k, v := range fresh.CPU {
				if f(k) {
					old.CPU[k] = v
				}
			}
		}
	}
	// The full run keeps its comparison with the run before it; a row
	// measured again is compared with the full run's figure it replaces.
	for _, row := range spreadRows(fresh) {
		if v, ok := fresh.Previous[row.Key]; ok {
			if old.Previous == nil {
				old.Previous = map[string]float64{}
			}
			old.Previous[row.Key] = v
		}
	}
	old.Notes = append(old.Notes, fmt.Sprintf(partialNote+" (%s, %s, %.0f s; BENCH_ONLY=%s): %s; everything else comes from the run above.",
		fresh.Started.UTC().Format("2006-01-02 15:04 UTC"), machineText(fresh.Machine), fresh.Seconds, strings.Join(ms, ","), strings.Join(ms, ", ")))
	for _, n := range fresh.Notes {
		old.Notes = append(old.Notes, "Partial run: "+n)
	}
	return old, nil
}

// parsePIDs reads "PID[,PID...]".
func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("-backend-pid %q: want PID[,PID...]", s)
		}
		out = append(out, p)
	}
	return out, nil
}
