package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Instructions are the proxy process's instructions per small request,
// the floor's and nexmux's, counted by valgrind's callgrind
// (scripts/callgrind.sh): a count that does not depend on the load of the
// machine, so nexmux's own work against the Go floor can be judged on a
// noisy one.
type Instructions struct {
	Counted time.Time `json:"counted"` // a partial run (BENCH_ONLY=instr) adds them to an older run
	// Rounds per method ("HEAD", "GET"): thousands of instructions per
	// request, one value per alternating round.
	Floor  map[string][]float64 `json:"floor"`
	Nexmux map[string][]float64 `json:"nexmux"`
}

// callgrindLine is what scripts/callgrind.sh prints for each round.
var callgrindLine = regexp.MustCompile(`^(HEAD|GET) round \d+: floor ([0-9.]+)k, nexmux ([0-9.]+)k instructions per request`)

// parseCallgrind reads scripts/callgrind.sh's output.
func parseCallgrind(r io.Reader) (*Instructions, error) {
	in := &Instructions{Floor: map[string][]float64{}, Nexmux: map[string][]float64{}}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		m := callgrindLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f, err1 := strconv.ParseFloat(m[2], 64)
		x, err2 := strconv.ParseFloat(m[3], 64)
		if err1 != nil || err2 != nil || f <= 0 || x <= 0 {
			return nil, fmt.Errorf("callgrind output: bad line %q", sc.Text())
		}
		in.Floor[m[1]] = append(in.Floor[m[1]], f)
		in.Nexmux[m[1]] = append(in.Nexmux[m[1]], x)
		n++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("callgrind output: no round")
	}
	return in, nil
}

// instrMain adds scripts/callgrind.sh's counts (stdin) to a results file.
func instrMain(args []string) error {
	fs := flag.NewFlagSet("instr", flag.ExitOnError)
	path := fs.String("results", "results.json", "results `FILE` to add the counts to")
	_ = fs.Parse(args)
	in, err := parseCallgrind(os.Stdin)
	if err != nil {
		return err
	}
	res, err := readResults(*path)
	if err != nil {
		return err
	}
	in.Counted = time.Now().UTC()
	res.Instructions = in
	return writeResults(*path, res)
}

// instrGoals judges nexmux's own work by instruction count, per method.
func instrGoals(res *Results) []goal {
	in := res.Instructions
	if in == nil {
		return nil
	}
	var out []goal
	for _, m := range []string{"HEAD", "GET"} {
		f, x := in.Floor[m], in.Nexmux[m]
		if len(f) == 0 || len(x) == 0 {
			continue
		}
		r, ok := ratio(median(f), median(x), true, true)
		out = append(out, goal{What: "nexmux's own work, " + m + ": instructions per small request of the proxy alone (callgrind), Go floor ÷ nexmux ≥ 0.95",
			Measured: r, Limit: 0.95, Known: ok, Key: "instr-" + m})
	}
	return out
}

// instrText gives a method's counts, round by round.
func instrText(res *Results, method string) string {
	in := res.Instructions
	if in == nil || len(in.Floor[method]) == 0 {
		return ""
	}
	list := func(v []float64) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = fmt.Sprintf("%.1fk", x)
		}
		return strings.Join(s, ", ")
	}
	when := "In this run"
	if !in.Counted.IsZero() {
		when = "Counted " + in.Counted.Format("2006-01-02 15:04") + " UTC"
	}
	return fmt.Sprintf("%s: the Go floor took %s instructions per %s request and nexmux %s (alternating rounds of 3000 requests on one keep-alive TLS connection, the proxy under valgrind with one P).",
		when, list(in.Floor[method]), method, list(in.Nexmux[method]))
}
