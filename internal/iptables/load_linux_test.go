package iptables

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/internal/netns"
	"github.com/nexmux/nexmux/internal/testnet"
)

// inNetns gives the test a network namespace of its own (needs root and
// iptables; skips without, unless NEXMUX_REQUIRE_NETNS is set) and returns
// a function running f inside it: commands f starts see that namespace's
// nat table only.
func inNetns(t *testing.T) func(f func() error) {
	t.Helper()
	testnet.RequireNetns(t, "iptables", "ip6tables", "iptables-save", "ip6tables-save")
	name := fmt.Sprintf("nxipt-%d", os.Getpid())
	_ = exec.Command("ip", "netns", "del", name).Run() // left over by a killed run with the same pid
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return func(f func() error) {
		t.Helper()
		if err := netns.Do("/run/netns/"+name, f); err != nil {
			t.Fatal(err)
		}
	}
}

// nat returns iptables-save's nat table for each family, without comments
// and counters.
func nat() (map[string][]string, error) {
	tables := map[string][]string{}
	for _, fam := range Families {
		out, err := exec.Command(fam+"-save", "-t", "nat").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("%s-save: %v\n%s", fam, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				tables[fam] = append(tables[fam], strings.TrimSuffix(l, " [0:0]"))
			}
		}
	}
	return tables, nil
}

func TestInstallUninstall(t *testing.T) {
	do := inNetns(t)
	const foreign = "-A PREROUTING -p tcp -m tcp --dport 9999 -j REDIRECT --to-ports 9998"
	var log strings.Builder
	var before map[string][]string
	do(func() error {
		for _, fam := range Families {
			if out, err := exec.Command(fam, append([]string{"-t", "nat"}, strings.Fields(foreign)...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v\n%s", fam, err, out)
			}
		}
		var err error
		before, err = nat()
		return err
	})

	// ours lists the nexmux lines of each family's table, and checks the
	// foreign rule is still there.
	ours := func() map[string][]string {
		t.Helper()
		got := map[string][]string{}
		do(func() error {
			tables, err := nat()
			for fam, lines := range tables {
				if !strings.Contains(strings.Join(lines, "\n"), foreign) {
					return fmt.Errorf("%s: the foreign rule is gone:\n%s", fam, strings.Join(lines, "\n"))
				}
				for _, l := range lines {
					if strings.Contains(l, "NEXMUX") {
						got[fam] = append(got[fam], l)
					}
				}
			}
			return err
		})
		return got
	}
	want := func(chain string, ports ...int) []string {
		w := append([]string{":" + chain + " -"},
			"-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m comment --comment nexmux -j "+chain,
			"-A OUTPUT -p tcp -m addrtype --dst-type LOCAL -m comment --comment nexmux -j "+chain)
		for _, p := range ports {
			w = append(w, fmt.Sprintf("-A %s -p tcp -m tcp --dport %d -m comment --comment nexmux -j REDIRECT --to-ports 8443", chain, p))
		}
		return w
	}
	check := func(step string, w []string) {
		t.Helper()
		got := ours()
		for _, fam := range Families {
			if strings.Join(got[fam], "\n") != strings.Join(w, "\n") {
				t.Fatalf("%s: %s nexmux lines:\n%s\nwant:\n%s\nlog:\n%s", step, fam, strings.Join(got[fam], "\n"), strings.Join(w, "\n"), log.String())
			}
		}
	}
	r := Rules{ListenPort: 8443, Ports: []int{8083, 8082}}
	do(func() error { return r.Install(Families, &log) })
	check("install", want("NEXMUX", 8082, 8083))
	do(func() error { return r.Install(Families, &log) })
	check("install again", want("NEXMUX", 8082, 8083))

	// Other ports replace the chain's content.
	r.Ports = []int{8084}
	do(func() error { return r.Install(Families, &log) })
	check("install other ports", want("NEXMUX", 8084))

	// A half-removed installation (one jump gone) gets that jump back, once.
	do(func() error {
		return exec.Command("iptables", append([]string{"-t", "nat", "-D"}, jump("OUTPUT", "NEXMUX")...)...).Run()
	})
	do(func() error { return r.Install(Families, &log) })
	check("install over a missing jump", want("NEXMUX", 8084))

	// Uninstall also copes with a missing jump, and twice is harmless.
	do(func() error {
		return exec.Command("ip6tables", append([]string{"-t", "nat", "-D"}, jump("PREROUTING", "NEXMUX")...)...).Run()
	})
	do(func() error { return r.Uninstall(Families, &log) })
	check("uninstall", nil)
	log.Reset()
	do(func() error { return r.Uninstall(Families, &log) })
	if n := strings.Count(log.String(), "does not exist; nothing to delete"); n != 2 {
		t.Fatalf("second uninstall said %q, want nothing to delete for both families", log.String())
	}

	// Two chains side by side; removing one leaves the other.
	b := Rules{Chain: "NEXMUX_B", ListenPort: 8443, Ports: []int{8085}}
	do(func() error { return r.Install(Families, &log) })
	do(func() error { return b.Install(Families, &log) })
	do(func() error { return r.Uninstall(Families, &log) })
	check("uninstall A beside B", want("NEXMUX_B", 8085))
	do(func() error { return b.Uninstall(Families, &log) })

	var after map[string][]string
	do(func() error {
		var err error
		after, err = nat()
		return err
	})
	for _, fam := range Families {
		if strings.Join(before[fam], "\n") != strings.Join(after[fam], "\n") {
			t.Fatalf("%s: nat table differs from before:\n%s\nwant:\n%s", fam, strings.Join(after[fam], "\n"), strings.Join(before[fam], "\n"))
		}
	}

	// Bad rules change nothing and say why.
	err := Rules{ListenPort: 8443}.Install(Families, &log)
	if err == nil || !strings.Contains(err.Error(), "nothing to redirect") {
		t.Fatalf("install without ports: %v", err)
	}
}

// A chain someone else uses is not taken over (declaring it flushes it) nor
// removed, in any family, when it exists in one only; a built-in chain is
// refused before the nat table is looked at. An existing chain with no
// rules in it or to it holds nothing to lose and is taken.
func TestInstallLeavesForeignChainsAlone(t *testing.T) {
	do := inNetns(t)
	ipt := func(fam string, args ...string) error {
		if out, err := exec.Command(fam, append([]string{"-w", "-t", "nat"}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v\n%s", fam, strings.Join(args, " "), err, out)
		}
		return nil
	}
	var before map[string][]string
	do(func() error {
		for _, fam := range Families {
			// Docker's nat chain, with its rule and jump.
			for _, args := range [][]string{
				{"-N", "DOCKER"}, {"-A", "DOCKER", "-i", "docker0", "-j", "RETURN"},
				{"-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"},
				// An empty chain that something jumps to.
				{"-N", "JUMPED"}, {"-A", "OUTPUT", "-p", "udp", "-j", "JUMPED"},
				{"-N", "SPARE"},
			} {
				if err := ipt(fam, args...); err != nil {
					return err
				}
			}
		}
		// A chain with a foreign rule in one family only.
		if err := ipt("ip6tables", "-N", "HALF"); err != nil {
			return err
		}
		if err := ipt("ip6tables", "-A", "HALF", "-p", "tcp", "-j", "RETURN"); err != nil {
			return err
		}
		var err error
		before, err = nat()
		return err
	})
	unchanged := func(step string) {
		t.Helper()
		do(func() error {
			after, err := nat()
			for _, fam := range Families {
				if strings.Join(before[fam], "\n") != strings.Join(after[fam], "\n") {
					t.Errorf("%s: %s nat table changed:\n%s\nwant:\n%s", step, fam, strings.Join(after[fam], "\n"), strings.Join(before[fam], "\n"))
				}
			}
			return err
		})
	}
	var log strings.Builder
	for _, tc := range []struct{ chain, want string }{
		{"DOCKER", "-A DOCKER -i docker0 -j RETURN"},
		{"JUMPED", "-A OUTPUT -p udp -j JUMPED"},
		{"HALF", "ip6tables: nat chain HALF is not nexmux's"},
		{"PREROUTING", "built-in chain"},
		{"OUTPUT", "built-in chain"},
	} {
		r := Rules{Chain: tc.chain, ListenPort: 8443, Ports: []int{8082}}
		for name, op := range map[string]func([]string, io.Writer) error{"install": r.Install, "uninstall": r.Uninstall} {
			var err error
			do(func() error { err = op(Families, &log); return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s chain %s: error %v, want one saying %q", name, tc.chain, err, tc.want)
			}
			unchanged(name + " " + tc.chain)
		}
	}

	// An empty, unreferenced chain is taken, and given back removed.
	r := Rules{Chain: "SPARE", ListenPort: 8443, Ports: []int{8082}}
	do(func() error { return r.Install(Families, &log) })
	do(func() error {
		tables, err := nat()
		for _, fam := range Families {
			if !strings.Contains(strings.Join(tables[fam], "\n"), "-A SPARE -p tcp -m tcp --dport 8082 -m comment --comment nexmux -j REDIRECT --to-ports 8443") {
				t.Errorf("%s: the empty chain SPARE was not taken:\n%s", fam, strings.Join(tables[fam], "\n"))
			}
		}
		return err
	})
	do(func() error { return r.Uninstall(Families, &log) })
	do(func() error {
		tables, err := nat()
		for _, fam := range Families {
			if strings.Contains(strings.Join(tables[fam], "\n"), "SPARE") {
				t.Errorf("%s: SPARE left behind:\n%s", fam, strings.Join(tables[fam], "\n"))
			}
		}
		return err
	})
}

// pipeTwice loads r's printed rules, then each jump once more, as the
// README's iptables-restore line run again did before the printed rules
// created their chain (-N) and so failed the second time: each jump is
// then there twice.
func pipeTwice(t *testing.T, do func(func() error), r Rules) {
	t.Helper()
	rules, err := r.Apply()
	if err != nil {
		t.Fatal(err)
	}
	do(func() error {
		for _, fam := range Families {
			cmd := exec.Command(fam+"-restore", "-w", "--noflush")
			cmd.Stdin = strings.NewReader(rules)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s-restore: %v\n%s", fam, err, out)
			}
			for _, parent := range []string{"PREROUTING", "OUTPUT"} {
				if out, err := exec.Command(fam, append([]string{"-w", "-t", "nat", "-A"}, jump(parent, r.chain())...)...).CombinedOutput(); err != nil {
					return fmt.Errorf("%s: %v\n%s", fam, err, out)
				}
			}
		}
		return nil
	})
}

// Rules piped by hand twice with their jumps (by an older nexmux, whose
// rules declared their chain instead of creating it) leave each jump twice.
// --load --delete must still remove everything: -D takes one copy, and -X
// of a chain still jumped to fails the whole transaction.
func TestUninstallRemovesDuplicatedJumps(t *testing.T) {
	do := inNetns(t)
	r := Rules{ListenPort: 8443, Ports: []int{8082}, Jumps: true}
	pipeTwice(t, do, r)
	var log strings.Builder
	do(func() error {
		if err := r.Uninstall(Families, &log); err != nil {
			t.Errorf("uninstall over duplicated jumps: %v", err)
		}
		return nil
	})
	do(func() error {
		tables, err := nat()
		for fam, lines := range tables {
			for _, l := range lines {
				if strings.Contains(l, "NEXMUX") {
					t.Errorf("%s: left behind: %s", fam, l)
				}
			}
		}
		return err
	})
}

// --load over jumps piped twice by hand leaves one copy of each, as it
// promises: a second jump would run the chain twice per packet.
func TestInstallCollapsesDuplicatedJumps(t *testing.T) {
	do := inNetns(t)
	r := Rules{ListenPort: 8443, Ports: []int{8082}, Jumps: true}
	pipeTwice(t, do, r)
	var log strings.Builder
	do(func() error { return r.Install(Families, &log) })
	do(func() error {
		tables, err := nat()
		for fam, lines := range tables {
			for _, parent := range []string{"PREROUTING", "OUTPUT"} {
				if n := countRule(strings.Join(lines, "\n"), jump(parent, "NEXMUX")); n != 1 {
					t.Errorf("%s: %d %s jumps after install, want 1:\n%s", fam, n, parent, strings.Join(lines, "\n"))
				}
			}
		}
		return err
	})
}

// A nat table ip6tables cannot read (a kernel or container without IPv6
// NAT) fails the load, naming the flag that loads the IPv4 rules alone;
// iptables's own failure carries no such hint. The commands are stand-ins
// that fail as iptables does there: only the error's words are tested.
func TestUnreadableIPv6NATNamesFamiliesFlag(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"iptables", "ip6tables"} {
		fail := fmt.Sprintf("#!/bin/sh\necho \"%s v1.8.9 (nf_tables): table 'nat' does not exist\" >&2\nexit 3\n", f)
		for _, cmd := range []string{f, f + "-restore"} {
			if err := os.WriteFile(dir+"/"+cmd, []byte(fail), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("PATH", dir)
	r := Rules{ListenPort: 8443, Ports: []int{8082}}
	err := r.Install([]string{"ip6tables"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot read the nat table") || !strings.Contains(err.Error(), "--families iptables") {
		t.Errorf("ip6tables without a nat table: %v; want it named, with --families iptables", err)
	}
	err = r.Install([]string{"iptables"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot read the nat table") || strings.Contains(err.Error(), "--families") {
		t.Errorf("iptables without a nat table: %v; want it named, with no --families hint", err)
	}
}

// backends are the iptables backends on this machine, as command-name
// suffixes ("-nft", "-legacy"); the default commands alone where neither
// is installed by that name.
func backends() []string {
	var bs []string
	for _, b := range []string{"-nft", "-legacy"} {
		ok := true
		for _, fam := range Families {
			for _, cmd := range []string{fam + b, fam + b + "-restore", fam + b + "-save"} {
				if _, err := exec.LookPath(cmd); err != nil {
					ok = false
				}
			}
		}
		if ok {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		bs = []string{""}
	}
	return bs
}

// The printed rules, piped to iptables-restore --noflush as the README
// says, must never empty a chain nexmux does not own: declaring a chain
// (":C - [0:0]") flushes it, and piping, unlike --load, looks at nothing
// first. With their jumps the rules create their chain (-N), so they fail
// over any existing one, theirs applied before included (which would
// otherwise double the jumps); without them (--jumps=false, to re-apply)
// they check first (-C) that nexmux's two jumps lead into the chain. A
// failed transaction changes nothing. Every backend on the machine, both
// families.
func TestPipedRulesNeverFlushAForeignChain(t *testing.T) {
	for _, be := range backends() {
		t.Run("iptables"+be, func(t *testing.T) {
			do := inNetns(t)
			ipt := func(fam string, args ...string) error {
				if out, err := exec.Command(fam+be, append([]string{"-w", "-t", "nat"}, args...)...).CombinedOutput(); err != nil {
					return fmt.Errorf("%s%s %s: %v\n%s", fam, be, strings.Join(args, " "), err, out)
				}
				return nil
			}
			pipe := func(fam, rules string) error {
				cmd := exec.Command(fam+be+"-restore", "-w", "--noflush")
				cmd.Stdin = strings.NewReader(rules)
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			}
			save := func() map[string]string {
				t.Helper()
				tables := map[string]string{}
				do(func() error {
					for _, fam := range Families {
						out, err := exec.Command(fam+be+"-save", "-t", "nat").CombinedOutput()
						if err != nil {
							return fmt.Errorf("%s%s-save: %v\n%s", fam, be, err, out)
						}
						var lines []string
						for _, l := range strings.Split(string(out), "\n") {
							if l != "" && !strings.HasPrefix(l, "#") {
								lines = append(lines, strings.TrimSuffix(l, " [0:0]"))
							}
						}
						tables[fam] = strings.Join(lines, "\n")
					}
					return nil
				})
				return tables
			}
			do(func() error {
				for _, fam := range Families {
					for _, args := range [][]string{
						// Docker's chain, its rule and its jump.
						{"-N", "DOCKER"}, {"-A", "DOCKER", "-i", "docker0", "-j", "RETURN"},
						{"-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"},
						// A chain with a rule, jumped to by nothing.
						{"-N", "OTHER"}, {"-A", "OTHER", "-p", "udp", "-j", "RETURN"},
					} {
						if err := ipt(fam, args...); err != nil {
							return err
						}
					}
				}
				return nil
			})
			before := save()
			// refused pipes rules for chain and wants every family's
			// restore to fail and the nat table to stay as it was.
			refused := func(what string, r Rules, print func(Rules) (string, error)) {
				t.Helper()
				want := save()
				rules, err := print(r)
				if err != nil {
					t.Fatal(err)
				}
				do(func() error {
					for _, fam := range Families {
						if err := pipe(fam, rules); err == nil {
							t.Errorf("%s: %s%s-restore took the rules:\n%s", what, fam, be, rules)
						}
					}
					return nil
				})
				if got := save(); got["iptables"] != want["iptables"] || got["ip6tables"] != want["ip6tables"] {
					t.Errorf("%s: the nat table changed:\n%s\n%s\nwant:\n%s\n%s", what, got["iptables"], got["ip6tables"], want["iptables"], want["ip6tables"])
				}
			}
			apply := func(r Rules) (string, error) { return r.Apply() }
			del := func(r Rules) (string, error) { return r.Delete() }
			for _, chain := range []string{"DOCKER", "OTHER"} {
				for _, jumps := range []bool{true, false} {
					r := Rules{Chain: chain, ListenPort: 8443, Ports: []int{8082}, Jumps: jumps}
					refused(fmt.Sprintf("chain %s, jumps %v", chain, jumps), r, apply)
				}
				refused("delete chain "+chain, Rules{Chain: chain}, del)
			}

			// nexmux's own chain: applied once with its jumps, applied
			// again it fails (no doubled jumps); re-applied without them
			// it replaces the ports.
			r := Rules{ListenPort: 8443, Ports: []int{8082, 8083}, Jumps: true}
			rules, err := r.Apply()
			if err != nil {
				t.Fatal(err)
			}
			do(func() error {
				for _, fam := range Families {
					if err := pipe(fam, rules); err != nil {
						return fmt.Errorf("%s: first apply: %v", fam, err)
					}
				}
				return nil
			})
			refused("the full rules again", r, apply)
			r.Jumps, r.Ports = false, []int{8084}
			rules, err = r.Apply()
			if err != nil {
				t.Fatal(err)
			}
			do(func() error {
				for _, fam := range Families {
					if err := pipe(fam, rules); err != nil {
						return fmt.Errorf("%s: re-apply with --jumps=false: %v", fam, err)
					}
				}
				return nil
			})
			tables := save()
			for _, fam := range Families {
				got := tables[fam]
				for _, parent := range []string{"PREROUTING", "OUTPUT"} {
					if n := countRule(got, jump(parent, "NEXMUX")); n != 1 {
						t.Errorf("%s: %d %s jumps, want 1:\n%s", fam, n, parent, got)
					}
				}
				if !strings.Contains(got, "--dport 8084 ") || strings.Contains(got, "--dport 8082 ") {
					t.Errorf("%s: re-applied ports not replaced:\n%s", fam, got)
				}
			}
			// The printed delete takes back exactly what was added.
			rules, err = r.Delete()
			if err != nil {
				t.Fatal(err)
			}
			do(func() error {
				for _, fam := range Families {
					if err := pipe(fam, rules); err != nil {
						return fmt.Errorf("%s: delete: %v", fam, err)
					}
				}
				return nil
			})
			if got := save(); got["iptables"] != before["iptables"] || got["ip6tables"] != before["ip6tables"] {
				t.Errorf("after the delete the nat table differs from before:\n%s\n%s\nwant:\n%s\n%s", got["iptables"], got["ip6tables"], before["iptables"], before["ip6tables"])
			}
		})
	}
}
