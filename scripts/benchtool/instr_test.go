package main

import (
	"strings"
	"testing"
)

// scripts/callgrind.sh's rounds become the instruction goals, judged by
// the median of each side's rounds.
func TestInstructionGoals(t *testing.T) {
	out := `some build noise
HEAD round 1: floor 183.3k, nexmux 191.2k instructions per request (floor / nexmux 0.959)
HEAD round 2: floor 183.3k, nexmux 191.3k instructions per request (floor / nexmux 0.958)
GET round 1: floor 191.6k, nexmux 215.6k instructions per request (floor / nexmux 0.889)
GET round 2: floor 192.2k, nexmux 216.2k instructions per request (floor / nexmux 0.889)
`
	in, err := parseCallgrind(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Nexmux["GET"]; len(got) != 2 || got[1] != 216.2 {
		t.Fatalf("GET rounds %v", got)
	}
	res := sampleResults()
	res.Instructions = in
	gt := goalsTable(res)
	for _, want := range []string{
		"| nexmux's own work, HEAD: instructions per small request of the proxy alone (callgrind), Go floor ÷ nexmux ≥ 0.95 | 0.96× | **met**",
		"| nexmux's own work, GET: instructions per small request of the proxy alone (callgrind), Go floor ÷ nexmux ≥ 0.95 | 0.89× | **missed** by 6% short",
		"In this run: the Go floor took 191.6k, 192.2k instructions per GET request and nexmux 215.6k, 216.2k",
	} {
		if !strings.Contains(gt, want) {
			t.Errorf("goals table lacks %q:\n%s", want, gt)
		}
	}
	for _, bad := range []string{"", "HEAD round 1: floor k, nexmux 1k instructions per request", "GET round 1: floor 0k, nexmux 1.0k instructions per request"} {
		if _, err := parseCallgrind(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
