package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Column names as bench.sh passes them with -target.
const (
	colDirect   = "direct"
	colNexmux   = "nexmux"
	colSonatype = "nginx-sonatype"
	colTuned    = "nginx-tuned"
	// colFloor is crypto/tls + net/http + httputil.ReverseProxy alone
	// (benchtool floor): what nexmux's parts cost without nexmux.
	colFloor = "floor"
)

var columnTitle = map[string]string{
	colDirect:   "TLS direct (no proxy)",
	colNexmux:   "nexmux",
	colSonatype: "nginx, Sonatype config",
	colTuned:    "nginx, tuned",
	colFloor:    "Go ReverseProxy alone",
}

func title(name string) string {
	if t, ok := columnTitle[name]; ok {
		return t
	}
	return name
}

// row is one measure across the targets.
type row struct {
	Name   string
	Unit   string
	Higher bool // higher is better
	Values map[string]float64
	Prec   int
}

func rows(res *Results) []*row {
	var out []*row
	add := func(name, unit string, higher bool, prec int, vals map[string]float64) {
		if len(vals) > 0 {
			out = append(out, &row{Name: name, Unit: unit, Higher: higher, Values: vals, Prec: prec})
		}
	}
	med := func(m map[string]Series) map[string]float64 {
		v := map[string]float64{}
		for k, s := range m {
			v[k] = s.Median
		}
		return v
	}
	gib := fmt.Sprintf("%g GiB", float64(res.Settings.BlobBytes)/(1<<30))
	add("blob pull, "+gib, "MiB/s", true, 0, med(res.Pull))
	add("blob push, "+gib+" (PATCH + PUT)", "MiB/s", true, 0, med(res.Push))
	add(fmt.Sprintf("HEAD manifest, %d keep-alive conns", res.Settings.RateConns), "req/s", true, 0, med(res.Rate))
	add("full TLS handshakes", "/s", true, 0, med(res.Handshake))
	add("resumed TLS handshakes (session ticket, TLS 1.3 PSK)", "/s", true, 0, med(res.Resume))
	p50, p99, a50, a99 := map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
	d, hasDirect := res.Latency[colDirect]
	for k, l := range res.Latency {
		p50[k], p99[k] = l.P50us, l.P99us
		if hasDirect && k != colDirect {
			a50[k], a99[k] = l.P50us-d.P50us, l.P99us-d.P99us
		}
	}
	add("latency p50, HEAD manifest", "µs", false, 0, p50)
	add("latency p99, HEAD manifest", "µs", false, 0, p99)
	add("added latency p50 vs direct", "µs", false, 0, a50)
	add("added latency p99 vs direct", "µs", false, 0, a99)
	mem := map[string]float64{}
	for k, i := range res.Idle {
		mem[k] = i.PerConnKiB
	}
	add(fmt.Sprintf("memory per idle TLS conn (%d conns)", res.Settings.IdleConns), "KiB", false, 1, mem)
	return out
}

// goal is one target of issue 8, judged from one run.
type goal struct {
	What     string
	Measured float64 // a ratio, or KiB for the memory goal
	Limit    float64
	AtMost   bool // Measured must be <= Limit (else >=)
	Unit     string
	Known    bool
	Key      string // reasons[Key] explains a miss
}

func (g goal) Met() bool {
	if !g.Known {
		return false
	}
	if g.AtMost {
		return g.Measured <= g.Limit
	}
	return g.Measured >= g.Limit
}

func (g goal) format(v float64) string {
	if g.Unit == "KiB" {
		return fmt.Sprintf("%.1f KiB", v)
	}
	if g.Unit == "×3" {
		return fmt.Sprintf("%.3f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

func ratio(a, b float64, okA, okB bool) (float64, bool) {
	if !okA || !okB || b == 0 {
		return 0, false
	}
	return a / b, true
}

// roundRatios is a/b for each pair of repetitions or rounds: they are
// interleaved, so the i-th of each ran side by side.
func roundRatios(a, b Series) []float64 {
	var rs []float64
	for i := 0; i < len(a.Values) && i < len(b.Values); i++ {
		if b.Values[i] > 0 {
			rs = append(rs, a.Values[i]/b.Values[i])
		}
	}
	return rs
}

// spread is the lowest and highest of the rounds' ratios a/b.
func spread(a, b Series) (lo, hi float64, ok bool) {
	rs := roundRatios(a, b)
	if len(rs) == 0 {
		return 0, 0, false
	}
	return slices.Min(rs), slices.Max(rs), true
}

// pairedRatio is the median of the rounds' ratios a/b: the route-count
// comparison is an A/B of one program, and the machine drifts by more
// between rounds than the two sides differ, so each round's pair (run back
// to back) is compared and the drift cancels. Without pairs it is the
// ratio of the medians.
func pairedRatio(a, b Series) (float64, bool) {
	rs := roundRatios(a, b)
	if len(rs) == 0 {
		return ratio(a.Median, b.Median, a.Median > 0, b.Median > 0)
	}
	return median(rs), true
}

// spreadText says how far the ratios nearest a target moved within this run.
func spreadText(res *Results) string {
	var parts []string
	add := func(what string, a, b Series) {
		if lo, hi, ok := spread(a, b); ok {
			parts = append(parts, fmt.Sprintf("%s %.2f-%.2f×", what, lo, hi))
		}
	}
	add("push ÷ TLS direct", res.Push[colNexmux], res.Push[colDirect])
	add("handshakes ÷ nginx tuned", res.Handshake[colNexmux], res.Handshake[colTuned])
	add("handshakes ÷ nginx, Sonatype config", res.Handshake[colNexmux], res.Handshake[colSonatype])
	if len(parts) == 0 {
		return ""
	}
	return "Throughput ratios move from round to round on a shared two-core virtual machine (in this run, round by round: " +
		strings.Join(parts, ", ") + "); the CPU time per unit of work below is the steadier comparison.\n\n"
}

func goals(res *Results) []goal {
	var out []goal
	get := func(m map[string]Series, k string) (float64, bool) {
		s, ok := m[k]
		return s.Median, ok && s.Median > 0
	}
	vs := func(what, key string, m map[string]Series, other string, limit float64) {
		a, okA := get(m, colNexmux)
		b, okB := get(m, other)
		r, ok := ratio(a, b, okA, okB)
		out = append(out, goal{What: what, Measured: r, Limit: limit, Known: ok, Key: key})
	}
	vs("blob pull ≥ 1.0× nginx tuned", "pull-nginx", res.Pull, colTuned, 1.0)
	vs("blob pull ≥ 0.9× TLS direct (no proxy)", "pull-direct", res.Pull, colDirect, 0.9)
	vs("blob push ≥ 1.0× nginx tuned", "push-nginx", res.Push, colTuned, 1.0)
	vs("blob push ≥ 0.9× TLS direct (no proxy)", "push-direct", res.Push, colDirect, 0.9)
	if len(res.Small) == 0 { // else the small-request targets table judges it
		vs("keep-alive small requests ≥ 1.0× nginx tuned", "rate-nginx", res.Rate, colTuned, 1.0)
	}
	// nginx's TLS settings are the same in both configurations: the better
	// of the two is the bar.
	hs := map[string]Series{colNexmux: res.Handshake[colNexmux]}
	best := res.Handshake[colSonatype]
	if s := res.Handshake[colTuned]; s.Median > best.Median {
		best = s
	}
	hs["nginx"] = best
	vs("full handshakes/s ≥ 1.0× nginx (better of both configs)", "handshake-nginx", hs, "nginx", 1.0)
	if n, ok := res.Latency[colNexmux]; ok {
		d, okD := res.Latency[colDirect]
		t, okT := res.Latency[colTuned]
		if okD && okT {
			an, at := n.P50us-d.P50us, t.P50us-d.P50us
			r, ok := ratio(an, at, true, at > 0)
			out = append(out, goal{What: fmt.Sprintf("added latency p50 ≤ nginx tuned's (nexmux %.0f µs, nginx tuned %.0f µs over TLS direct)", an, at),
				Measured: r, Limit: 1, AtMost: true, Known: ok, Key: "latency-nginx"})
		}
	}
	if i, ok := res.Idle[colNexmux]; ok {
		out = append(out, goal{What: "≤ 24 KiB per idle TLS connection", Measured: i.PerConnKiB, Limit: 24, AtMost: true, Unit: "KiB", Known: true, Key: "idle"})
	}
	if rt := res.Routes; rt != nil {
		r, ok := pairedRatio(rt.RateMany, rt.RateOne)
		out = append(out, goal{What: fmt.Sprintf("%d routes ≥ 0.98× one route (HEAD manifest req/s)", rt.Count), Measured: r, Limit: 0.98, Known: ok, Key: "routes-rate"})
		r, ok = pairedRatio(rt.HandshakeMany, rt.HandshakeOne)
		out = append(out, goal{What: fmt.Sprintf("%d routes ≥ 0.98× one route (handshakes/s, SNI over all names)", rt.Count), Measured: r, Limit: 0.98, Known: ok, Key: "routes-handshake"})
	}
	out = append(out, instrGoals(res)...)
	return append(out, nodesGoals(res)...)
}

// why explains each goal's outcome from what the profiles and the CPU
// table of this machine show (docs/bench/README-section.md has the
// evidence). Missed is shown when the run missed the goal, met when it met
// it.
type why struct{ met, missed string }

const (
	pullChanges  = "nexmux reads Nexus with a 512 KiB copy buffer and sends a response's TLS records sixteen at a time in one write(2) (l7 copyBufferSize, mux routedConn batching)"
	hopCost      = "the proxy hop itself costs CPU on the same two cores the client and the TLS work need: the proxy's plaintext socket I/O and the backend's (compare proxy + backend with the direct backend in the CPU table)"
	pushChanges  = "nexmux gathers the client's 16 KiB TLS records into 512 KiB writes to Nexus (l7 bodywrite.go): on loopback, moving a GiB in 16 KiB writes costs both ends about twice the CPU of 128 KiB writes, 512 KiB writes cost the receiving side (the bench's backend) a third less again, and nginx and a bare httputil.ReverseProxy write a record at a time; below crypto/tls it reads the upload ahead in 512 KiB reads (l7 ReadAheader)"
	nodesPullWhy = "more nodes add no capacity here (every bench backend serves the blob from page cache on the same two cores), so this checks that spreading reads costs nexmux no throughput: the pulls of a repetition hash to one node or several by (repository, digest)"
	nodesCPUWhy  = "the node choice itself allocates and sorts nothing (upstream BenchmarkPick: 141 ns with three nodes) and l7 BenchmarkUpstreamNodes, with one process serving every node, shows the same allocations and CPU per request for 1 and 3 nodes; with one backend process per node, three backend processes share the two cores with nexmux and the row's run-to-run spread (1.01-1.14x in four runs) is wider than the 5% margin (docs/bench/notes.md)"
	idleWhy      = "an HTTP/1 keep-alive connection idle for --idle-release-after (1 s) gives back net/http's connection goroutine (an 8 KiB stack " +
		"the runtime cannot shrink: the idle read inside net/http and crypto/tls is too deep for 4) and its 4 KiB read and write buffers, " +
		"and waits for its next request on a goroutine of its own with a small stack, on the same socket and TLS session (mux idlerelease.go; " +
		"nginx frees a keep-alive connection's buffers the same way); once traffic goes quiet nexmux returns freed memory to the OS " +
		"(internal/memtrim: two forced collections, then every free page back). Without the release an idle connection kept ~27 KiB: the " +
		"Go floor, which does neither, keeps more"
	routesWhy = "the route table is two map probes whatever its size (route BenchmarkLookupHost, mux BenchmarkHandshake: same ns/op for 1 and 10,000 routes), so any difference is this machine's run-to-run noise (see the rounds in results.json)"
)

var instrWhy = why{
	met: "what nexmux does beyond the floor per request (the ClientHello peek's wrappers, routing, the Host and path checks, header rewriting, the HA failover round-tripper, the access line, metrics) costs under 5% of the proxy's instructions. " +
		"The count leaves the machine's load out; the whole-machine ratio in the small-request targets table moves by 10-20% from run to run on this shared machine.",
	missed: "what is left above the floor: the HA failover round-tripper (~4k instructions: node choice, in-flight and latency bookkeeping, the connection slot) and the access line (~3.5k), docs/bench/levers.md.",
}

var reasons = map[string]why{
	"instr-HEAD": instrWhy,
	"instr-GET":  instrWhy,
	"pull-nginx": {
		met:    pullChanges + ".",
		missed: pullChanges + "; with that, its CPU per GiB is close to tuned nginx's (CPU table), and the rest is Go's netpoller waking on every ACK and run-to-run noise.",
	},
	"pull-direct": {
		met:    pullChanges + ".",
		missed: hopCost + "; for pulls the backend uses sendfile, so most of it is nexmux reading and re-encrypting.",
	},
	"push-nginx": {
		met:    pushChanges + ".",
		missed: pushChanges + "; the remaining difference is within this machine's noise (CPU table).",
	},
	"push-direct": {
		met:    pushChanges + ": the backend then reads Nexus's side in large pieces too, while the direct backend reads its TLS stream a record at a time.",
		missed: pushChanges + "; what remains is that " + hopCost + ".",
	},
	"rate-nginx": {
		met: "",
		missed: "per request nexmux runs a net/http server (TLS side) and a net/http client (the Transport, with its read and write loop goroutines), " +
			"which together cost more CPU than nginx's whole proxy path; docs/bench/small-requests.md has the profiles of nexmux and of the Go floor.",
	},
	"handshake-nginx": {
		met: "the handshake is crypto-bound (X25519 and the ECDSA P-256 signature are about half of the server's CPU), and nexmux keeps a 16 MiB " +
			"heap floor so that its small live heap does not make the collector run every few MiB (memtrim.HeapFloor).",
		missed: "at parity within this machine's noise (the round-by-round spread below): the client's half of every handshake is the same in each " +
			"column, and the server's is crypto-bound: X25519 and the ECDSA P-256 signature are about half of its CPU, and on this CPU Go's X25519 " +
			"takes about twice as long as OpenSSL's and its P-256 signature about 1.6 times, so Go's TLS stack has no headroom to spare. nexmux keeps " +
			"a 16 MiB heap floor so that its small live heap does not make the collector run every few MiB (memtrim.HeapFloor); what it adds over a bare Go TLS server is the peek, the route and the hand-off to net/http (a second goroutine per " +
			"connection, the routing read).",
	},
	"idle": {
		met: idleWhy + ".",
		missed: idleWhy + "; what stays is crypto/tls state (~3 KiB, AES-GCM key schedules for both directions included), the parked goroutine's " +
			"small stack, the socket and nexmux's routing state (~1 KiB), and the allocator's fragmentation around them.",
	},
	"latency-nginx": {
		met: "",
		missed: "one request at a time, the Go runtime parks and wakes threads around every request: ~10 thread switches per request in nexmux's process, " +
			"as in the Go floor's, against nginx's 2 (sysmon's 20 µs polls restarting, and idle Ps' threads woken to spin at each goroutine hand-off: " +
			"net/http's connection goroutine and per-request background read, the Transport's write and read loops), and three times the CPU per " +
			"request nexmux spends under load; scripts/bench-wakeups.sh measures it and docs/bench/small-requests.md has the breakdown.",
	},
	"routes-rate":      {met: routesWhy + ".", missed: routesWhy + "."},
	"routes-handshake": {met: routesWhy + ".", missed: routesWhy + "."},
	"nodes-pull":       {met: nodesPullWhy + ".", missed: nodesPullWhy + "."},
	"nodes-cpu":        {met: nodesCPUWhy + ".", missed: nodesCPUWhy + "."},
}

func fmtVal(v float64, prec int) string {
	s := fmt.Sprintf("%.*f", prec, v)
	// thousands separators for readability
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

// table renders the results table in Markdown.
func table(res *Results) string {
	var b strings.Builder
	cols := res.Targets
	b.WriteString("| measure | unit |")
	for _, c := range cols {
		b.WriteString(" " + title(c) + " |")
	}
	ratioCols := []string{colTuned, colSonatype, colDirect, colFloor}
	for _, c := range ratioCols {
		b.WriteString(" nexmux ÷ " + title(c) + " |")
	}
	b.WriteString("\n|---|---|")
	for range cols {
		b.WriteString("---:|")
	}
	for range ratioCols {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, r := range rows(res) {
		better := "higher is better"
		if !r.Higher {
			better = "lower is better"
		}
		fmt.Fprintf(&b, "| %s | %s (%s) |", r.Name, r.Unit, better)
		for _, c := range cols {
			if v, ok := r.Values[c]; ok {
				b.WriteString(" " + fmtVal(v, r.Prec) + " |")
			} else {
				b.WriteString(" — |")
			}
		}
		for _, c := range ratioCols {
			n, okN := r.Values[colNexmux]
			o, okO := r.Values[c]
			if rr, ok := ratio(n, o, okN, okO); ok && !strings.HasPrefix(r.Name, "added") {
				fmt.Fprintf(&b, " %.2f× |", rr)
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	if rt := res.Routes; rt != nil {
		b.WriteString("\n")
		fmt.Fprintf(&b, "| nexmux route table | 1 route | %s routes | %s ÷ 1 (median of the rounds' ratios) |\n|---|---:|---:|---:|\n", fmtVal(float64(rt.Count), 0), fmtVal(float64(rt.Count), 0))
		rr, _ := pairedRatio(rt.RateMany, rt.RateOne)
		fmt.Fprintf(&b, "| HEAD manifest, %d keep-alive conns (req/s) | %s | %s | %.3f× |\n", res.Settings.RateConns,
			fmtVal(rt.RateOne.Median, 0), fmtVal(rt.RateMany.Median, 0), rr)
		hr, _ := pairedRatio(rt.HandshakeMany, rt.HandshakeOne)
		fmt.Fprintf(&b, "| full TLS handshakes, SNI over every name (/s) | %s | %s | %.3f× |\n",
			fmtVal(rt.HandshakeOne.Median, 0), fmtVal(rt.HandshakeMany.Median, 0), hr)
	}
	if nt := nodesTable(res); nt != "" {
		b.WriteString("\n" + nt)
	}
	return b.String()
}

// cpuTable says where the CPU went: the proxy's own processes, and the whole
// serving side (proxy + backend; for the direct column the backend alone,
// which is the server there).
func cpuTable(res *Results) string {
	if len(res.CPU) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| CPU time | ")
	for _, c := range res.Targets {
		b.WriteString(title(c) + " | ")
	}
	b.WriteString("\n|---|")
	for range res.Targets {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, m := range []struct{ key, what string }{
		{"pull", "per GiB pulled"}, {"push", "per GiB pushed"},
		{"HEAD manifest", "per HEAD request"}, {"handshake", "per full handshake"},
		{"resumed handshake", "per resumed handshake"},
	} {
		cpu, ok := res.CPU[m.key]
		if !ok {
			continue
		}
		unit := ""
		for _, c := range cpu {
			unit = strings.TrimSuffix(strings.TrimSuffix(c.Unit, "/GiB"), "/op")
		}
		line := func(label string, f func(t string, c CPU) (float64, bool)) {
			fmt.Fprintf(&b, "| %s %s (%s) |", label, m.what, unit)
			for _, t := range res.Targets {
				if v, ok := f(t, cpu[t]); ok {
					b.WriteString(" " + fmtVal(v, 0) + " |")
				} else {
					b.WriteString(" — |")
				}
			}
			b.WriteString("\n")
		}
		line("proxy", func(t string, c CPU) (float64, bool) { return c.Server, t != colDirect && c.Unit != "" })
		line("proxy + backend", func(t string, c CPU) (float64, bool) { return c.Server + c.Backend, c.Unit != "" })
		line("client", func(t string, c CPU) (float64, bool) { return c.Client, c.Unit != "" })
	}
	return b.String()
}

func goalsTable(res *Results) string {
	var b strings.Builder
	b.WriteString("| target | measured | result |\n|---|---:|---|\n")
	for _, g := range goals(res) {
		m := "not measured"
		if g.Known {
			m = g.format(g.Measured)
		}
		result := "**met**"
		if w := reasons[g.Key].met; w != "" {
			result += ": " + w
		}
		floor := floorText(res, g.Key) + nodesText(res, g.Key)
		if !g.Known {
			result = "not measured in this run"
		} else if !g.Met() {
			result = "**missed**"
			if g.Unit == "KiB" {
				result += fmt.Sprintf(" by %.1f KiB", g.Measured-g.Limit)
			} else {
				result += " by " + missedBy(g.Measured, g.Limit, g.AtMost)
			}
			if w := reasons[g.Key].missed; w != "" {
				result += ": " + w
			}
		}
		if g.Known && floor != "" {
			result += " " + floor
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", g.What, m, result)
	}
	return b.String()
}

// floorText sets nexmux beside the Go floor (httputil.ReverseProxy alone)
// for the goals the floor explains, from this run's numbers.
func floorText(res *Results, key string) string {
	switch key {
	case "handshake-nginx":
		cpu := res.CPU["handshake"]
		n, ok := cpu[colNexmux]
		if !ok || n.Server == 0 {
			return ""
		}
		var others []string
		for _, c := range []string{colSonatype, colTuned, colFloor} {
			if o, ok := cpu[c]; ok && o.Server > 0 {
				others = append(others, fmt.Sprintf("%s %.0f µs", title(c), o.Server))
			}
		}
		if len(others) == 0 {
			return ""
		}
		return fmt.Sprintf("In this run nexmux spent %.0f µs of CPU per full handshake; %s.", n.Server, strings.Join(others, ", "))
	case "rate-nginx":
		f, okF := res.Rate[colFloor]
		n, okN := res.Rate[colNexmux]
		t, okT := res.Rate[colTuned]
		if !okF || !okN || !okT || f.Median == 0 || t.Median == 0 {
			return ""
		}
		return fmt.Sprintf("In this run the Go floor (%s: crypto/tls, net/http and httputil.ReverseProxy with no routing, checks, rewriting, logging or metrics) "+
			"reached %.2f× nginx tuned, and nexmux %.2f× of that floor: what separates nexmux from nginx is the floor, not nexmux's own work.",
			title(colFloor), f.Median/t.Median, n.Median/f.Median)
	case "instr-HEAD", "instr-GET":
		return instrText(res, strings.TrimPrefix(key, "instr-"))
	case "idle":
		f, okF := res.Idle[colFloor]
		n, okN := res.Idle[colNexmux]
		if !okF || !okN || f.PerConnKiB == 0 {
			return ""
		}
		s := fmt.Sprintf("In this run nexmux kept %.1f KiB per idle connection", n.PerConnKiB)
		if n.StackAfter > 0 && n.HeapAfter > 0 {
			per := func(after, before float64) float64 { return (after - before) / float64(n.Conns) / 1024 }
			s += fmt.Sprintf(" (goroutine stacks %.1f KiB, Go heap in use %.1f KiB, per the runtime's own statistics; memory trims: %.0f)",
				per(n.StackAfter, n.StackBefore), per(n.HeapAfter, n.HeapBefore), n.Trims)
		}
		s += fmt.Sprintf(" and the Go floor (%s), which neither releases nor trims, %.1f KiB.", title(colFloor), f.PerConnKiB)
		if n.Trims == 0 && n.HeapAfter > 0 {
			s += " No trim happened during this measurement, so nexmux's figure includes the collector's headroom."
		}
		return s
	}
	return ""
}

func settingsText(res *Results) string {
	s := res.Settings
	var b strings.Builder
	fmt.Fprintf(&b, "Client: benchtool's Go load generator for every column (%s, key exchange %s, ECDSA P-256 certificate, no session resumption but in the resumed-handshake row)", s.ClientProtocol, s.ClientGroup)
	if len(s.SmallGenerators) > 1 {
		b.WriteString("; the small-request matrix adds wrk and ab (see Small requests)")
	}
	b.WriteString(". ")
	fmt.Fprintf(&b, "Blob transfers: median of %d repetitions, interleaved across targets. ", s.Reps)
	if len(res.Small) > 0 {
		fmt.Fprintf(&b, "The keep-alive row is the small-request matrix's benchtool HEAD cell at %d conns (%d rounds of %gs). ", s.RateConns, s.SmallRounds, s.SmallSeconds)
	}
	fmt.Fprintf(&b, "Rates: median of %d interleaved rounds of %gs, every other round in reverse order (handshakes: %d concurrent clients, %gs, "+
		"enough to keep both cores busy for every column: with 8 the Go servers left 10-17%% of the CPU idle between round trips, so the figure "+
		"measured the client's pipeline more than the server). ", s.Rounds, s.RateSeconds, s.HSWorkers, s.HSSeconds)
	if len(res.Resume) > 0 {
		fmt.Fprintf(&b, "Resumed handshakes: %d clients, each primed with a session ticket by one request, then reconnecting with it "+
			"(TLS 1.3 PSK with a fresh X25519 share, what Go's client offers), %d rounds of %gs; a handshake that did not resume counts as an error. ",
			s.HSWorkers, s.SmallRounds, s.HSSeconds)
	}
	fmt.Fprintf(&b, "Latency: %d sequential requests on one keep-alive connection per target. ", s.LatencyN)
	fmt.Fprintf(&b, "Memory: RSS growth (nginx: master and every worker) over %d idle keep-alive TLS connections that each served one HEAD, divided by their number.", s.IdleConns)
	if s.RouteCount > 0 {
		fmt.Fprintf(&b, " Route count: nexmux with 1 and with %d routes in %d interleaved rounds of %gs; the ratio is the median of the rounds' ratios, so the machine's drift between rounds cancels.", s.RouteCount, s.RouteRounds, s.RouteSeconds)
	}
	if n := res.Nodes; n != nil {
		procs := fmt.Sprintf("%d bench backend processes, each its own node", n.Count)
		if p := s.NodeProcs; p > 0 && p < n.Count {
			procs = fmt.Sprintf("%d bench backend process(es) serving the %d nodes' ports, so that the row measures nexmux's own cost of several nodes rather than more backend processes competing for the two cores (with one process per node the row spread 1.01-1.14x over four runs; docs/bench/notes.md)", p, n.Count)
		}
		fmt.Fprintf(&b, " Upstream nodes: nexmux with one --upstream and with %d (%s, all probed healthy and writable); "+
			"pulls: %d repetitions of %d concurrent pulls of distinct digests (the same for both), interleaved, the ratio the median of the repetitions' ratios; "+
			"CPU: nexmux's own CPU time over %d interleaved rounds of HEAD manifest (a read not by digest, so every request takes the least-loaded pick) divided by the requests served.",
			n.Count, procs, s.Reps, n.Streams, s.NodeRounds)
	}
	return b.String()
}

func tlsText(res *Results) string {
	var parts []string
	for _, t := range res.Targets {
		if v, ok := res.TLS[t]; ok {
			parts = append(parts, title(t)+": "+v)
		}
	}
	return "Negotiated: " + strings.Join(parts, "; ") + "."
}

func machineText(m Machine) string {
	return fmt.Sprintf("%d cores (nproc), %s, %s, %s, %s, %s", m.NProc, m.CPU, m.Memory, m.Kernel, m.Go, m.Nginx)
}

func reportMain(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "results.json", "results `FILE` from benchtool run")
	md := fs.String("md", "", "write the Markdown results to `FILE`")
	png := fs.String("png", "", "write the chart to `FILE`")
	readme := fs.String("readme", "", "write the README's Performance section to `FILE`")
	chartRef := fs.String("chart-ref", "docs/bench/results.png", "path of the chart as the README links it")
	runTime := fs.String("run-time", "", "wall time of the whole `make bench`, for the report")
	notes := fs.String("notes", "", "docs/bench/small-requests.md: its marked paragraph on nexmux's internals goes into the README section")
	_ = fs.Parse(args)
	res, err := readResults(*in)
	if err != nil {
		return err
	}
	tbl := table(res)
	gt := goalsTable(res)
	st, sg, sp := smallTable(res, false), smallGoalsTable(res), spreadTable(res)
	fmt.Println(tbl)
	fmt.Println(st)
	fmt.Println(sg)
	fmt.Println(cpuTable(res))
	fmt.Println(gt)
	fmt.Println(sp)
	if *md != "" {
		var b strings.Builder
		b.WriteString("# nexmux benchmark results\n\n")
		fmt.Fprintf(&b, "Run %s on %s. Measuring took %.0f s", res.Started.UTC().Format("2006-01-02 15:04 UTC"), machineText(res.Machine), res.Seconds)
		if *runTime != "" {
			fmt.Fprintf(&b, "; the whole `make bench` %s", *runTime)
		}
		b.WriteString(".\n\n")
		b.WriteString(tbl + "\n")
		if st != "" {
			b.WriteString("## Small requests\n\n" + smallText(res) + "\n\n" + st + "\n" + sg + "\n")
		}
		b.WriteString("## Targets\n\n" + gt + "\n")
		if sp != "" {
			b.WriteString("## Run-to-run spread and the previous run\n\n" + spreadIntro + "\n\n" + sp + "\n")
		}
		if ct := cpuTable(res); ct != "" {
			b.WriteString("Where the two cores went (user + system CPU time of each side during the timed part; on loopback the kernel charges part of one side's TCP work to the other):\n\n" + ct + "\n")
		}
		b.WriteString(settingsText(res) + " " + tlsText(res) + "\n")
		for _, n := range res.Notes {
			b.WriteString("\n- " + n)
		}
		b.WriteString("\n![benchmark chart](results.png)\n")
		if err := os.WriteFile(*md, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	if *readme != "" {
		if err := os.WriteFile(*readme, []byte(readmeSection(res, tbl, gt, *chartRef, *runTime, internalsParagraph(*notes))), 0o644); err != nil {
			return err
		}
	}
	if *png != "" {
		img := chart(res)
		if err := writePNG(*png, img); err != nil {
			return err
		}
	}
	return nil
}

func readmeSection(res *Results, tbl, gt, chartRef, runTime, internals string) string {
	var b strings.Builder
	b.WriteString("## Performance\n\n")
	b.WriteString("`make bench` (scripts/bench.sh) runs nexmux, nginx with Sonatype's documented reverse-proxy settings, " +
		"nginx tuned, a bare Go httputil.ReverseProxy (the floor for nexmux's parts) and the backend served over TLS with no proxy hop (the limit on the machine) side by side on one " +
		"machine, on loopback, with the same certificate, the same backend (a Nexus-shaped server: " +
		"`/repository/<repo>/v2/...` blobs from page cache, HEAD manifests, uploads discarded and counted) and the same client.\n\n")
	fmt.Fprintf(&b, "Latest run: %s, %s.", res.Started.UTC().Format("2006-01-02"), machineText(res.Machine))
	if runTime != "" {
		fmt.Fprintf(&b, " Run time: %s.", runTime)
	}
	b.WriteString("\n\n")
	b.WriteString(tbl + "\n")
	// A row measured again later (BENCH_ONLY) says when and how.
	for _, n := range res.Notes {
		if strings.HasPrefix(n, partialNote) || strings.HasPrefix(n, "Partial run: ") {
			b.WriteString("- " + n + "\n")
		}
	}
	fmt.Fprintf(&b, "\n![nexmux benchmark](%s)\n\n", chartRef)
	if st := smallTable(res, true); st != "" {
		b.WriteString("### Small requests\n\n" + smallText(res) + fmt.Sprintf(" Here at %d connections; docs/bench/results.md has every cell, "+
			"the raw /proc/stat figure and the clients' CPU.", smallGoalConns(res)) + "\n\n" + st + "\n")
	}
	b.WriteString("### Targets\n\n")
	if sg := smallGoalsTable(res); sg != "" {
		b.WriteString(sg + "\n")
	}
	b.WriteString(gt + "\n")
	if internals != "" {
		b.WriteString(internals + "\n\n")
	}
	b.WriteString(spreadText(res))
	if sp := spreadTable(res); sp != "" {
		b.WriteString(spreadIntro + "\n\n" + sp + "\n")
	}
	if ct := cpuTable(res); ct != "" {
		b.WriteString("### Where the CPU went\n\n")
		b.WriteString("Client, proxy and backend share the two cores, so each side's CPU time per unit of work explains the throughput " +
			"(user + system time from /proc during the timed part; on loopback the kernel charges part of one side's TCP work to the other):\n\n")
		b.WriteString(ct + "\n")
	}
	b.WriteString("### How it is measured\n\n")
	b.WriteString(settingsText(res) + " " + tlsText(res) + "\n\n")
	b.WriteString("- nginx, Sonatype config: `proxy_buffering off; proxy_request_buffering off; proxy_send_timeout 120; proxy_read_timeout 300;`, " +
		"one server block per host with `location /v2/ { proxy_pass http://backend/repository/<repo>/v2/; }` and Sonatype's proxy headers, " +
		"otherwise nginx's defaults (HTTP/1.0 and a new connection per request upstream; `client_max_body_size 0` instead of Sonatype's 1G so the blob size may grow).\n")
	b.WriteString("- nginx, tuned: the same timeouts and `proxy_request_buffering off`, plus `proxy_http_version 1.1` with a keep-alive pool to the backend " +
		"(`keepalive 64`), buffering on with larger buffers (`proxy_buffer_size 64k; proxy_buffers 32 64k; proxy_busy_buffers_size 256k`), " +
		"`proxy_max_temp_file_size 0` (never a temporary file) and `keepalive_requests 100000`.\n")
	b.WriteString("- Both nginx use `worker_processes auto` (one worker per core) and log every request like nexmux does " +
		"(nginx writes each line at once, its default; nexmux gathers access lines for up to 50 ms).\n")
	b.WriteString("- nexmux: `nexmux serve` with its defaults (its GC tuning included: a 16 MiB heap floor, and freed memory returned once traffic goes quiet), " +
		"built as `go build` builds it: with profile-guided optimisation from cmd/nexmux/default.pgo (`make pgo` refreshes it), " +
		"which also speeds up the library code inside the binary; the 10,000-route table comes from a `--config` YAML file.\n")
	b.WriteString("- Go ReverseProxy alone (`benchtool floor`): crypto/tls, net/http's server and httputil.ReverseProxy over an http.Transport with nexmux's pool sizes, " +
		"and nothing else (no ClientHello peek, routing, checks, rewriting, logging or metrics), the library's buffer sizes, Go's default GC settings and no profile-guided optimisation: the parts nexmux is built on. " +
		"Per small request and per idle connection nexmux does all this does and more, so there it is the floor for this design; " +
		"for bulk transfers it shows what nexmux's batched writes and read-ahead add over the library's defaults.\n\n")
	b.WriteString("Reproduce with `make bench` (scripts/bench.sh; installs nginx-light, wrk, apache2-utils and valgrind with apt when missing, so root then). " +
		"Results: docs/bench/results.md, docs/bench/results.png, raw numbers in docs/bench/results.json. " +
		"Go micro-benchmarks of the hot paths: `go test -run '^$' -bench . -benchmem ./sni ./route ./l7 ./mux`; instructions per small request of the proxy alone, nexmux against the Go floor (valgrind, independent of the machine's load; `make bench` runs it after the small requests and judges it among the targets): `scripts/callgrind.sh`; thread switches and CPU per small request one at a time and under load, nexmux against the Go floor and nginx tuned (what holds back the latency target): `scripts/bench-wakeups.sh`.\n")
	return b.String()
}
