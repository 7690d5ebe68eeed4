package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/nexmux/nexmux/internal/errlist"
)

// Families are the netfilter commands Install and Uninstall drive: IPv4
// and IPv6 take the same rules.
var Families = []string{"iptables", "ip6tables"}

// ParseFamilies checks a --families list. An entry may hold several names
// separated by spaces or commas ("iptables ip6tables"), as an environment
// variable does.
func ParseFamilies(list []string) ([]string, error) {
	var fams []string
	var errs *multierror.Error
	for _, entry := range list {
		for _, f := range strings.FieldsFunc(entry, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			// Any case, as every word a setting takes: the command's
			// name is the lower-case one.
			name := strings.ToLower(f)
			switch {
			case !slices.Contains(Families, name):
				errs = multierror.Append(errs, fmt.Errorf("family %q: want iptables and/or ip6tables", f))
			case !slices.Contains(fams, name):
				fams = append(fams, name)
			}
		}
	}
	if len(fams) == 0 && errs.ErrorOrNil() == nil {
		errs = multierror.Append(errs, errors.New("no family: want iptables and/or ip6tables"))
	}
	return fams, errlist.Err(errs)
}

// Install loads the rules into the nat table of each family, one
// <family>-restore --noflush transaction per family. Declaring the chain
// replaces its content; a jump that exists already is left out, so
// installing twice, or over a half-removed installation, leaves exactly one
// copy of every rule. r.Jumps is ignored: Install always ends with both
// jumps. A family whose commands are missing is skipped with a line on log;
// none at all is an error. A chain that exists with rules nexmux did not
// write (in it, or jumping to it) is not taken over: declaring it would
// flush them. Every family is checked before any is changed; nothing more
// is changed after a failure.
func (r Rules) Install(fams []string, log io.Writer) error {
	if err := r.Validate(); err != nil {
		return err
	}
	return r.each(fams, log, func(f family) error {
		pre, out := f.jumps(r.chain())
		rules, err := r.apply(pre == 0, out == 0, []string{string(f)})
		if err != nil {
			return err
		}
		// Copies beyond the first (rules piped by hand more than once)
		// go, in the same transaction.
		var extra strings.Builder
		for parent, n := range map[string]int{"PREROUTING": pre, "OUTPUT": out} {
			for ; n > 1; n-- {
				fmt.Fprintf(&extra, "-D %s\n", strings.Join(jump(parent, r.chain()), " "))
			}
		}
		rules = strings.TrimSuffix(rules, "COMMIT\n") + extra.String() + "COMMIT\n"
		if err := f.restore(rules); err != nil {
			return err
		}
		fmt.Fprintf(log, "%s: applied (chain %s)\n", f, r.chain())
		return nil
	})
}

// Uninstall removes what Install added: the jumps that exist, then the
// chain. Nothing else in the nat table is touched: a family without the
// chain has nothing to delete, and a chain holding rules nexmux did not
// write is left alone (an error).
func (r Rules) Uninstall(fams []string, log io.Writer) error {
	if err := r.ValidateChain(); err != nil {
		return err
	}
	return r.each(fams, log, func(f family) error {
		if !f.run("-S", r.chain()) {
			fmt.Fprintf(log, "%s: chain %s does not exist; nothing to delete\n", f, r.chain())
			return nil
		}
		pre, out := f.jumps(r.chain())
		rules, err := r.delete(pre, out)
		if err != nil {
			return err
		}
		if err := f.restore(rules); err != nil {
			return err
		}
		fmt.Fprintf(log, "%s: deleted (chain %s)\n", f, r.chain())
		return nil
	})
}

// each runs do for every family whose commands exist, stopping at the
// first error. Before the first do, every such family's nat table must be
// readable and r's chain, if it exists there, nexmux's own.
func (r Rules) each(fams []string, log io.Writer, do func(family) error) error {
	var usable []family
	for _, name := range fams {
		f := family(name)
		if !slices.Contains(Families, name) {
			return fmt.Errorf("family %q: want iptables and/or ip6tables", name)
		}
		if !f.installed() {
			fmt.Fprintf(log, "%s: %s-restore (or %s) not found; skipping this family\n", f, f, f)
			continue
		}
		usable = append(usable, f)
	}
	if len(usable) == 0 {
		return fmt.Errorf("no iptables family available (families %s)", strings.Join(fams, ", "))
	}
	for _, f := range usable {
		if err := f.owned(r.chain()); err != nil {
			return err
		}
	}
	for _, f := range usable {
		if err := do(f); err != nil {
			return err
		}
	}
	return nil
}

// maxForeign is how many foreign rules an error quotes.
const maxForeign = 5

// owned reads the nat table and fails unless chain is absent or holds,
// and is jumped to by, only rules carrying nexmux's comment. A nat table
// that cannot be read (no kernel support, no NET_ADMIN) is an error, not a
// reason to skip quietly.
func (f family) owned(chain string) error {
	out, err := exec.Command(string(f), "-w", "-t", "nat", "-S").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		hint := ""
		if f == "ip6tables" {
			// A kernel or container without IPv6 NAT: the usual cause,
			// and one flag away from working.
			hint = " (no IPv6 NAT here? --families iptables loads the IPv4 rules alone)"
		}
		return fmt.Errorf("%s: cannot read the nat table: %v: %s%s", f, err, bytes.TrimSpace(stderr), hint)
	}
	foreign := foreignRules(string(out), chain)
	if len(foreign) == 0 {
		return nil
	}
	more := ""
	if len(foreign) > maxForeign {
		more = fmt.Sprintf("\n  ... and %d more", len(foreign)-maxForeign)
		foreign = foreign[:maxForeign]
	}
	return fmt.Errorf("%s: nat chain %s is not nexmux's: it has rules nexmux did not write (no --comment %s), which loading would flush; choose another --chain:\n  %s%s",
		f, chain, comment, strings.Join(foreign, "\n  "), more)
}

// foreignRules returns the rules of an iptables -S listing that are in
// chain or jump (or go) to it and lack nexmux's comment.
func foreignRules(listing, chain string) []string {
	var out []string
	for _, line := range strings.Split(listing, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "-A" || ours(fields) {
			continue
		}
		in := fields[1] == chain
		for i := 2; i+1 < len(fields) && !in; i++ {
			in = (fields[i] == "-j" || fields[i] == "-g") && fields[i+1] == chain
		}
		if in {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// ours reports whether a rule's fields carry the comment match nexmux
// writes (-m comment --comment nexmux; iptables-save may quote it).
func ours(fields []string) bool {
	for i := 0; i+3 < len(fields); i++ {
		if fields[i] == "-m" && fields[i+1] == "comment" && fields[i+2] == "--comment" &&
			(fields[i+3] == comment || fields[i+3] == `"`+comment+`"`) {
			return true
		}
	}
	return false
}

// family is "iptables" or "ip6tables", the name of its commands.
type family string

func (f family) installed() bool {
	for _, cmd := range []string{string(f), string(f) + "-restore"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return false
		}
	}
	return true
}

// run reports whether `<family> -w -t nat args...` succeeds.
func (f family) run(args ...string) bool {
	return exec.Command(string(f), append([]string{"-w", "-t", "nat"}, args...)...).Run() == nil
}

// jumps counts the copies of each of the two jumps into chain: the rules
// piped by hand to iptables-restore more than once hold a jump more than
// once. A nat table that cannot be listed has none.
func (f family) jumps(chain string) (pre, out int) {
	listing, err := exec.Command(string(f), "-w", "-t", "nat", "-S").Output()
	if err != nil {
		return 0, 0
	}
	return countRule(string(listing), jump("PREROUTING", chain)), countRule(string(listing), jump("OUTPUT", chain))
}

// countRule counts the lines of an iptables -S listing that append rule
// (as arguments after -A; iptables-save may quote the comment).
func countRule(listing string, rule []string) int {
	n := 0
	for _, line := range strings.Split(listing, "\n") {
		fields := strings.Fields(line)
		if len(fields) != len(rule)+1 || fields[0] != "-A" {
			continue
		}
		same := true
		for i, f := range fields[1:] {
			if strings.Trim(f, `"`) != rule[i] {
				same = false
				break
			}
		}
		if same {
			n++
		}
	}
	return n
}

// restore loads rules in one transaction.
func (f family) restore(rules string) error {
	cmd := exec.Command(string(f)+"-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %s-restore --noflush failed: %v: %s\nthe rules were:\n%s", f, f, err, bytes.TrimSpace(out), rules)
	}
	return nil
}
