package iptables

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateListsEveryProblem(t *testing.T) {
	err := Rules{Chain: "bad chain!", ListenPort: 0}.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad chain, no listen port and no ports")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{`chain "bad chain!"`, "listen port 0", "no --port routes"}
	if len(lines) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("problem %d %q does not mention %q", i, lines[i], w)
		}
	}
	if err := (Rules{ListenPort: 8443, Ports: []int{8082}}).Validate(); err != nil {
		t.Errorf("valid rules refused: %v", err)
	}
}

// A built-in chain is never nexmux's: declaring PREROUTING flushed it in
// --noflush mode, and a jump from PREROUTING into itself does not load.
func TestBuiltinChainRefused(t *testing.T) {
	for _, c := range Builtin {
		r := Rules{Chain: c, ListenPort: 8443, Ports: []int{8082}}
		for what, err := range map[string]error{"ValidateChain": r.ValidateChain(), "Validate": r.Validate()} {
			if err == nil || !strings.Contains(err.Error(), "built-in chain") {
				t.Errorf("%s with chain %s: %v, want a built-in chain error", what, c, err)
			}
		}
		if _, err := r.Apply(); err == nil {
			t.Errorf("Apply rendered rules for chain %s", c)
		}
		if _, err := r.Delete(); err == nil {
			t.Errorf("Delete rendered a removal of chain %s", c)
		}
	}
	// Names that only resemble one are user chains.
	for _, c := range []string{"NEXMUX", "DOCKER", "PREROUTING_NX", "prerouting"} {
		if err := (Rules{Chain: c}).ValidateChain(); err != nil {
			t.Errorf("chain %s refused: %v", c, err)
		}
	}
}

func TestForeignRules(t *testing.T) {
	const listing = `-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-N DOCKER
-N NEXMUX
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m comment --comment nexmux -j NEXMUX
-A OUTPUT -p tcp -m addrtype --dst-type LOCAL -m comment --comment "nexmux" -j NEXMUX
-A OUTPUT -p tcp -m comment --comment nexmux-old -g NEXMUX
-A DOCKER -i docker0 -j RETURN
-A NEXMUX -p tcp -m tcp --dport 8082 -m comment --comment nexmux -j REDIRECT --to-ports 8443
-A NEXMUX_B -p tcp -j RETURN
`
	for chain, want := range map[string][]string{
		"DOCKER": {"-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER", "-A DOCKER -i docker0 -j RETURN"},
		"NEXMUX": {"-A OUTPUT -p tcp -m comment --comment nexmux-old -g NEXMUX"},
		"NX":     nil,
	} {
		if got := foreignRules(listing, chain); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("foreignRules(%s) = %q, want %q", chain, got, want)
		}
	}
}

// A chain named like a target is refused before anything is loaded, as
// iptables would refuse it only while loading. Every target extension this
// machine's iptables has must be in the list.
func TestTargetNamedChainRefused(t *testing.T) {
	for _, c := range Targets {
		if err := (Rules{Chain: c}).ValidateChain(); err == nil || !strings.Contains(err.Error(), "iptables target") {
			t.Errorf("chain %s: %v, want a target-name error", c, err)
		}
	}
	mods, _ := filepath.Glob("/usr/lib/*/xtables/lib*t_*.so")
	mods2, _ := filepath.Glob("/usr/lib*/xtables/lib*t_*.so")
	for _, m := range append(mods, mods2...) {
		_, name, _ := strings.Cut(strings.TrimSuffix(filepath.Base(m), ".so"), "_")
		if name != strings.ToUpper(name) {
			continue // a match extension
		}
		if err := (Rules{Chain: name}).ValidateChain(); err == nil {
			t.Errorf("chain %s (target extension %s) accepted", name, m)
		}
	}
	for _, c := range []string{"NEXMUX", "accept", "LOGS"} {
		if err := (Rules{Chain: c}).ValidateChain(); err != nil {
			t.Errorf("chain %s refused: %v", c, err)
		}
	}
}

// "standard" is a target too (libxt_standard, the verdicts' extension),
// whose module name is lower-case: iptables -N refuses it, yet
// iptables-restore loads a chain so named and its jumps, which -D can then
// never match, so --load --delete failed on every run and left the
// REDIRECT rules in place. It is refused before anything is loaded.
func TestStandardTargetNamedChainRefused(t *testing.T) {
	r := Rules{Chain: "standard", ListenPort: 8443, Ports: []int{8082}}
	if err := r.ValidateChain(); err == nil || !strings.Contains(err.Error(), "iptables target") {
		t.Errorf("chain standard: %v, want a target-name error", err)
	}
	if _, err := r.Apply(); err == nil {
		t.Error("Apply rendered rules for chain standard")
	}
	// Other spellings are ordinary chain names to iptables.
	for _, c := range []string{"Standard", "STANDARD"} {
		if err := (Rules{Chain: c}).ValidateChain(); err != nil {
			t.Errorf("chain %s refused: %v", c, err)
		}
	}
}
