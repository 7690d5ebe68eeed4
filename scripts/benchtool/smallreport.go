package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// Reports of the small-request matrix, the run-to-run spread and the
// comparison with the previous run.

var genTitle = map[string]string{
	genGo:  "benchtool (Go)",
	genWrk: "wrk",
	genAb:  "ab",
}

// smallLoads lists the matrix's (generator, method, conns) in run order.
func smallLoads(res *Results) []smallJob {
	var out []smallJob
	seen := map[string]bool{}
	for _, c := range res.Small {
		k := cellKey(c.Generator, c.Method, c.Conns)
		if !seen[k] {
			seen[k] = true
			out = append(out, smallJob{c.Generator, c.Method, c.Conns})
		}
	}
	return out
}

func smallCell(res *Results, j smallJob, target string) (SmallCell, bool) {
	for _, c := range res.Small {
		if c.Generator == j.gen && c.Method == j.method && c.Conns == j.conns && c.Target == target {
			return c, true
		}
	}
	return SmallCell{}, false
}

func loadTitle(j smallJob) string {
	return fmt.Sprintf("%s, %s, %d conns", genTitle[j.gen], j.method, j.conns)
}

// rangeText is "min–max" of a series with the table's precision.
func rangeText(s Series, prec int) string {
	if len(s.Values) < 2 {
		return ""
	}
	return fmtVal(slices.Min(s.Values), prec) + "–" + fmtVal(slices.Max(s.Values), prec)
}

// smallTable renders the matrix: per load, req/s with its rounds' range,
// the whole machine's CPU per request (the judged figure), the proxy's own,
// and latency where the generator reports it. Compact (the README) keeps
// the largest connection count and leaves out the raw machine and client
// rows.
func smallTable(res *Results, compact bool) string {
	if len(res.Small) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| load | measure |")
	for _, t := range res.Targets {
		b.WriteString(" " + title(t) + " |")
	}
	b.WriteString(" nexmux ÷ " + title(colFloor) + " | nexmux ÷ " + title(colTuned) + " |\n|---|---|")
	for range res.Targets {
		b.WriteString("---:|")
	}
	b.WriteString("---:|---:|\n")
	top := smallGoalConns(res)
	for _, j := range smallLoads(res) {
		if compact && j.conns != top {
			continue
		}
		line := func(measure string, f func(c SmallCell) (string, float64, bool)) {
			fmt.Fprintf(&b, "| %s | %s |", loadTitle(j), measure)
			vals := map[string]float64{}
			for _, t := range res.Targets {
				c, ok := smallCell(res, j, t)
				txt, v, ok2 := f(c)
				if !ok || !ok2 {
					b.WriteString(" — |")
					continue
				}
				vals[t] = v
				b.WriteString(" " + txt + " |")
			}
			for _, o := range []string{colFloor, colTuned} {
				n, okN := vals[colNexmux]
				d, okD := vals[o]
				if r, ok := ratio(n, d, okN, okD); ok {
					fmt.Fprintf(&b, " %.2f× |", r)
				} else {
					b.WriteString(" — |")
				}
			}
			b.WriteString("\n")
		}
		line("req/s (rounds' min–max)", func(c SmallCell) (string, float64, bool) {
			s := fmtVal(c.Rate.Median, 0)
			if rt := rangeText(c.Rate, 0); rt != "" {
				s += " (" + rt + ")"
			}
			if c.Rate.Errors > 0 {
				s += fmt.Sprintf(" [%d errors]", c.Rate.Errors)
			}
			return s, c.Rate.Median, c.Rate.Median > 0
		})
		line("**whole machine** µs CPU/req", func(c SmallCell) (string, float64, bool) {
			return "**" + fmtVal(c.MachineUs, 1) + "**", c.MachineUs, c.MachineUs > 0
		})
		if !compact {
			line("whole machine as /proc/stat counts it, other sessions included", func(c SmallCell) (string, float64, bool) {
				return fmtVal(c.MachineRawUs, 1), c.MachineRawUs, c.MachineRawUs > 0
			})
		}
		line("proxy µs CPU/req", func(c SmallCell) (string, float64, bool) {
			return fmtVal(c.ProxyUs, 1), c.ProxyUs, c.ProxyUs > 0
		})
		if !compact {
			line("client µs CPU/req", func(c SmallCell) (string, float64, bool) {
				return fmtVal(c.ClientUs, 1), c.ClientUs, c.ClientUs > 0
			})
		}
		line("latency p50 / p99 µs", func(c SmallCell) (string, float64, bool) {
			return fmtVal(c.P50us, 0) + " / " + fmtVal(c.P99us, 0), c.P50us, c.P50us > 0
		})
	}
	return b.String()
}

// smallGoal kinds, judged at the matrix's largest connection count.
type smallGoal struct {
	what   string
	limit  float64
	atMost bool
	// value returns the judged ratio of a load.
	value func(n, floor, tuned SmallCell) (float64, bool)
}

var smallGoalKinds = []smallGoal{
	{"whole-machine CPU per request ≤ nginx tuned's (nexmux ÷ nginx tuned)", 1.0, true, func(n, _, t SmallCell) (float64, bool) {
		return ratio(n.MachineUs, t.MachineUs, n.MachineUs > 0, t.MachineUs > 0)
	}},
	{"req/s ≥ 1.0× nginx tuned", 1.0, false, func(n, _, t SmallCell) (float64, bool) {
		return ratio(n.Rate.Median, t.Rate.Median, n.Rate.Median > 0, t.Rate.Median > 0)
	}},
	{"nexmux's own work: whole-machine CPU per request, Go floor ÷ nexmux ≥ 0.95", 0.95, false, func(n, f, _ SmallCell) (float64, bool) {
		return ratio(f.MachineUs, n.MachineUs, f.MachineUs > 0, n.MachineUs > 0)
	}},
	{"nexmux's own work: req/s ≥ 0.95× Go floor", 0.95, false, func(n, f, _ SmallCell) (float64, bool) {
		return ratio(n.Rate.Median, f.Rate.Median, n.Rate.Median > 0, f.Rate.Median > 0)
	}},
}

func smallGoalConns(res *Results) int {
	m := 0
	for _, c := range res.Small {
		m = max(m, c.Conns)
	}
	return m
}

// missedBy says how far a measured value is from its limit.
func missedBy(measured, limit float64, atMost bool) string {
	if atMost {
		return fmt.Sprintf("%.0f%% over", (measured/limit-1)*100)
	}
	return fmt.Sprintf("%.0f%% short", (1-measured/limit)*100)
}

// smallGoalsTable judges the small-request targets of issue 19 for every
// load at the largest connection count: rows are the targets, columns the
// loads.
func smallGoalsTable(res *Results) string {
	conns := smallGoalConns(res)
	var loads []smallJob
	for _, j := range smallLoads(res) {
		if j.conns == conns {
			loads = append(loads, j)
		}
	}
	if len(loads) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| target (%d keep-alive conns) |", conns)
	for _, j := range loads {
		fmt.Fprintf(&b, " %s %s |", genTitle[j.gen], j.method)
	}
	b.WriteString("\n|---|")
	for range loads {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, g := range smallGoalKinds {
		fmt.Fprintf(&b, "| %s |", g.what)
		for _, j := range loads {
			n, okN := smallCell(res, j, colNexmux)
			f, _ := smallCell(res, j, colFloor)
			t, _ := smallCell(res, j, colTuned)
			v, ok := g.value(n, f, t)
			if !okN || !ok {
				b.WriteString(" not measured |")
				continue
			}
			met := v <= g.limit
			if !g.atMost {
				met = v >= g.limit
			}
			if met {
				fmt.Fprintf(&b, " %.2f× **met** |", v)
			} else {
				fmt.Fprintf(&b, " %.2f× **missed** (%s) |", v, missedBy(v, g.limit, g.atMost))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// spreadRow is one rate measurement of one target with its rounds.
type spreadRow struct {
	Key     string // stable across runs: "measure/target"
	Measure string
	Target  string
	Unit    string
	S       Series
}

// spreadRows lists the rate rows whose run-to-run spread judges a
// regression (issue 19 point 6) and the small-request cells.
func spreadRows(res *Results) []spreadRow {
	var out []spreadRow
	gib := fmt.Sprintf("%g GiB", float64(res.Settings.BlobBytes)/(1<<30))
	add := func(key, measure, unit string, m map[string]Series) {
		for _, t := range res.Targets {
			if s, ok := m[t]; ok && s.Median > 0 {
				out = append(out, spreadRow{key + "/" + t, measure, t, unit, s})
			}
		}
	}
	add("pull", "blob pull, "+gib, "MiB/s", res.Pull)
	add("push", "blob push, "+gib, "MiB/s", res.Push)
	add("handshake", "full TLS handshakes", "/s", res.Handshake)
	add("resume", "resumed TLS handshakes", "/s", res.Resume)
	add("rate", fmt.Sprintf("HEAD manifest, %d conns (benchtool)", res.Settings.RateConns), "req/s", res.Rate)
	if rt := res.Routes; rt != nil {
		for _, x := range []struct {
			key, what string
			s         Series
			name      string
		}{
			{"routes-rate-one", "HEAD manifest, 1 route", rt.RateOne, rt.One},
			{"routes-rate-many", fmt.Sprintf("HEAD manifest, %d routes", rt.Count), rt.RateMany, rt.Many},
			{"routes-hs-one", "full TLS handshakes, 1 route", rt.HandshakeOne, rt.One},
			{"routes-hs-many", fmt.Sprintf("full TLS handshakes, %d routes", rt.Count), rt.HandshakeMany, rt.Many},
		} {
			if x.s.Median > 0 {
				unit := "req/s"
				if strings.HasPrefix(x.key, "routes-hs") {
					unit = "/s"
				}
				out = append(out, spreadRow{x.key + "/" + x.name, x.what, x.name, unit, x.s})
			}
		}
	}
	for _, c := range res.Small {
		j := smallJob{c.Generator, c.Method, c.Conns}
		out = append(out, spreadRow{"small " + cellKey(c.Generator, c.Method, c.Conns) + "/" + c.Target, loadTitle(j), c.Target, "req/s", c.Rate})
	}
	return out
}

// loadPrevious keeps the previous run's medians for the comparison.
func (r *runner) loadPrevious(path string) error {
	prev, err := readResults(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	r.res.Previous = previousOf(prev)
	r.res.PreviousStarted = prev.Started
	return nil
}

func previousOf(prev *Results) map[string]float64 {
	m := map[string]float64{}
	for _, row := range spreadRows(prev) {
		m[row.Key] = row.S.Median
	}
	return m
}

// spreadTable shows, for the rows a regression is judged on, this run's
// median, the min–max of its rounds or repetitions, and the previous run's
// median: a change is a regression only beyond the spread. The last column
// sets each rate against TLS direct's of the same run: the machine's own
// speed, which moves between runs on a shared host, cancels out.
func spreadTable(res *Results) string {
	var rows []spreadRow
	byKey := map[string]spreadRow{}
	for _, r := range spreadRows(res) {
		if !strings.HasPrefix(r.Key, "small ") {
			rows = append(rows, r)
			byKey[r.Key] = r
		}
	}
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	prevWhen := "previous run"
	if !res.PreviousStarted.IsZero() {
		prevWhen = "previous run (" + res.PreviousStarted.UTC().Format("2006-01-02") + ")"
	}
	fmt.Fprintf(&b, "| measure | target | median | rounds' min–max | spread | %s | vs previous | vs previous, relative to %s |\n|---|---|---:|---:|---:|---:|---|---|\n",
		prevWhen, title(refTarget))
	for _, r := range rows {
		lo, hi := slices.Min(r.S.Values), slices.Max(r.S.Values)
		sp := "—"
		if r.S.Median > 0 && len(r.S.Values) > 1 {
			sp = fmt.Sprintf("±%.0f%%", halfRange(r.S)*100)
		}
		prev, vs, rel := "—", "new row", "—"
		if p, ok := res.Previous[r.Key]; ok && p > 0 {
			prev = fmtVal(p, 0)
			verdict := "within the spread"
			switch {
			case len(r.S.Values) < 2:
				verdict = "no spread measured"
			case p > hi:
				verdict = "**below the previous run beyond the spread**"
			case p < lo:
				verdict = "above the previous run beyond the spread"
			}
			vs = fmt.Sprintf("%.2f× (%s)", r.S.Median/p, verdict)
			rel = relativeChange(res, byKey, r, p)
		}
		fmt.Fprintf(&b, "| %s | %s | %s %s | %s | %s | %s | %s | %s |\n", r.Measure, title(r.Target), fmtVal(r.S.Median, 0), r.Unit,
			fmtVal(lo, 0)+"–"+fmtVal(hi, 0), sp, prev, vs, rel)
	}
	return b.String()
}

// refTarget is the reference of the relative comparison: no proxy, so its
// rates are the machine's.
const refTarget = colDirect

// refKey is the spread row whose rate stands for the machine's speed in
// r's measure: TLS direct's; the route rows (nexmux only) take TLS
// direct's keep-alive rate or handshakes of the same run.
func refKey(r spreadRow) string {
	measure, _, _ := strings.Cut(r.Key, "/")
	switch {
	case strings.HasPrefix(measure, "routes-rate"):
		measure = "rate"
	case strings.HasPrefix(measure, "routes-hs"):
		measure = "handshake"
	}
	return measure + "/" + refTarget
}

func halfRange(s Series) float64 {
	if s.Median <= 0 || len(s.Values) < 2 {
		return 0
	}
	return (slices.Max(s.Values) - slices.Min(s.Values)) / 2 / s.Median
}

// relativeChange is r's ratio to the reference now over the same ratio in
// the previous run (prev is r's previous median); it is a regression only
// beyond both rows' spreads together.
func relativeChange(res *Results, byKey map[string]spreadRow, r spreadRow, prev float64) string {
	k := refKey(r)
	ref, ok := byKey[k]
	refPrev := res.Previous[k]
	if k == r.Key || !ok || ref.S.Median <= 0 || refPrev <= 0 {
		return "—"
	}
	change := (r.S.Median / ref.S.Median) / (prev / refPrev)
	if len(r.S.Values) < 2 || len(ref.S.Values) < 2 {
		return fmt.Sprintf("%.2f× (no spread measured)", change)
	}
	band := halfRange(r.S) + halfRange(ref.S)
	verdict := "within the spread"
	switch {
	case change < 1-band:
		verdict = "**below the previous run beyond the spread**"
	case change > 1+band:
		verdict = "above the previous run beyond the spread"
	}
	return fmt.Sprintf("%.2f× (%s, ±%.0f%%)", change, verdict, band*100)
}

// Markers around the paragraph of docs/bench/small-requests.md that the
// README section repeats (what in nexmux's internals stops a target).
const (
	internalsBegin = "<!-- BEGIN nexmux-internals -->"
	internalsEnd   = "<!-- END nexmux-internals -->"
)

// internalsParagraph returns the marked block of the notes file, "" when
// the file or the markers are missing.
func internalsParagraph(path string) string {
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	_, rest, ok := strings.Cut(string(data), internalsBegin)
	if !ok {
		return ""
	}
	block, _, ok := strings.Cut(rest, internalsEnd)
	if !ok {
		return ""
	}
	return strings.TrimSpace(block)
}

const spreadIntro = "Every rate below is the median of interleaved rounds (blob transfers: repetitions); the range is the lowest and highest " +
	"round of this run, and a change from the previous run (the committed results.json) counts as a regression only when the previous " +
	"median lies beyond it. Rates depend on the whole machine, whose speed moves between runs on a shared host: the last column divides each " +
	"rate by TLS direct's (no proxy) of the same run and compares that ratio with the previous run's, a regression only beyond both rows' " +
	"spreads together (the route rows, nexmux alone, take TLS direct's keep-alive rate or handshakes). When the notes at the end count " +
	"disturbed rounds (other sessions' work on the same cores), compare the CPU time per unit of work too before calling a lower rate a regression."

// smallText says how the matrix is measured.
func smallText(res *Results) string {
	s := res.Settings
	var gens []string
	for _, g := range s.SmallGenerators {
		gens = append(gens, genTitle[g])
	}
	return fmt.Sprintf("HEAD and GET of a %d-byte manifest over keep-alive TLS connections (%s), generators: %s; "+
		"each cell is the median of %d interleaved rounds of %gs (every other round in reverse target order). "+
		"**Whole machine** is the judged figure: the busy CPU time of every core from /proc/stat (all fields but idle and iowait, so client, "+
		"proxy, backend and the kernel's loopback work wherever it was charged) across the timed window, divided by the requests served. "+
		"Proxy, client: user + system time of those processes alone (nginx: master and workers; wrk and ab: their rusage). "+
		"wrk 4.1.0 cannot send HEAD (it waits for the Content-Length bytes of a body that never comes: 0 requests in 2 s; h2load 1.52 the same), "+
		"so ab measures HEAD from outside; ab speaks HTTP/1.0 with Connection: keep-alive, gives its latency percentiles to the microsecond only in its -e file (read from there) "+
		"and takes SNI from its Host header; wrk takes SNI from the URL's host, which bench.sh maps to 127.0.0.1 in /etc/hosts while it runs. "+
		"wrk and ab count their connection set-up in the window (%s handshakes against tens of thousands of requests); benchtool warms up for 0.3 s first. "+
		"Explanations and profiles: docs/bench/small-requests.md.",
		len(manifest), joinInts(s.SmallConns, " or "), strings.Join(gens, ", "), s.SmallRounds, s.SmallSeconds, joinInts(s.SmallConns, " or "))
}

func joinInts(v []int, sep string) string {
	var parts []string
	for _, n := range v {
		parts = append(parts, fmt.Sprint(n))
	}
	return strings.Join(parts, sep)
}
