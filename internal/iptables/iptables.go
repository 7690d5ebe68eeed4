// Package iptables renders the netfilter rules that move Nexus's legacy
// connector ports onto nexmux's one listener: nat REDIRECT, in
// iptables-restore format, for IPv4 and IPv6.
//
// Every rule nexmux owns sits in its own chain and carries a comment, so
// removal takes exactly those rules, and re-applying replaces the chain's
// content in one transaction instead of appending duplicates.
package iptables

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/nexmux/nexmux/internal/errlist"
)

// comment tags every rule nexmux writes.
const comment = "nexmux"

// DefaultChain is the nat chain holding the REDIRECT rules.
const DefaultChain = "NEXMUX"

var chainName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,27}$`)

// Builtin are the built-in chains of netfilter's tables. Declaring one in
// the rules would flush it (--noflush still empties a declared chain) and a
// jump into it is refused: --chain must name a chain of nexmux's own.
var Builtin = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "FORWARD"}

// Targets are the standard targets and the target extensions of iptables
// 1.8 (the libxt_/libipt_ modules with upper-case names, and "standard",
// the verdicts' own module). iptables refuses a chain named like a target
// ("chain name may not clash with target name"), but only when the rules
// are loaded; iptables-restore even loads "standard" and its jumps, which
// -D then never matches, so the rules could not be deleted.
var Targets = []string{"ACCEPT", "DROP", "QUEUE", "RETURN", "standard",
	"AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNMARK", "CONNSECMARK", "CT", "DNAT", "DNPT", "DSCP",
	"ECN", "HL", "HMARK", "IDLETIMER", "LED", "LOG", "MARK", "MASQUERADE", "NAT", "NETMAP", "NFLOG",
	"NFQUEUE", "NOTRACK", "RATEEST", "REDIRECT", "REJECT", "SECMARK", "SET", "SNAT", "SNPT", "SYNPROXY",
	"TCPMSS", "TCPOPTSTRIP", "TEE", "TOS", "TPROXY", "TRACE", "TTL", "ULOG"}

// Rules describes what to redirect.
type Rules struct {
	Chain      string // DefaultChain when empty
	ListenPort int    // nexmux's --listen port
	Ports      []int  // legacy connector ports
	// Jumps adds the PREROUTING (remote clients) and OUTPUT (clients on
	// this host) jumps into the chain. Leave it off when re-applying over
	// an installation whose jumps exist: the chain content is replaced and
	// the jumps are not duplicated (Apply's text checks they exist).
	Jumps bool
}

func (r Rules) chain() string {
	if r.Chain == "" {
		return DefaultChain
	}
	return r.Chain
}

// ValidateChain checks the chain name alone: what Delete and Uninstall
// need.
func (r Rules) ValidateChain() error {
	c := r.chain()
	switch {
	case !chainName.MatchString(c):
		return fmt.Errorf("chain %q: want letters, digits, '_' or '-', at most 28", c)
	case slices.Contains(Builtin, c):
		return fmt.Errorf("chain %q is a built-in chain: the rules need a chain of their own (default %s)", c, DefaultChain)
	case slices.Contains(Targets, c):
		return fmt.Errorf("chain %q is the name of an iptables target, which iptables refuses as a chain name (default %s)", c, DefaultChain)
	}
	return nil
}

// jump is the rule sending parent's TCP traffic to local addresses into
// chain, as arguments after -A, -D or -C.
func jump(parent, chain string) []string {
	return []string{parent, "-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment", "--comment", comment, "-j", chain}
}

// Validate reports every problem, one per line.
func (r Rules) Validate() error {
	var errs *multierror.Error
	if err := r.ValidateChain(); err != nil {
		errs = multierror.Append(errs, err)
	}
	if r.ListenPort < 1 || r.ListenPort > 65535 {
		errs = multierror.Append(errs, fmt.Errorf("listen port %d: the rules need nexmux's --listen port", r.ListenPort))
	}
	if len(r.Ports) == 0 {
		errs = multierror.Append(errs, errors.New("no --port routes: nothing to redirect"))
	}
	for _, p := range r.Ports {
		if p == r.ListenPort {
			errs = multierror.Append(errs, fmt.Errorf("port %d is the listen port", p))
		}
	}
	return errlist.Err(errs)
}

// Apply renders the rules for iptables-restore --noflush (or
// ip6tables-restore: the text is the same for both families); fams, the
// families they are for (none: both), are the commands their first lines
// say to apply them with. Piped, nothing looks at the nat table first, as
// Install does, so the text guards itself: declaring an existing chain
// would flush it, someone else's too. With the jumps it creates the chain
// (-N), failing over any existing one, which also keeps a second pipe from
// doubling the jumps; without them (re-applying) it declares the chain,
// replacing its rules, but first checks (-C) that nexmux's two jumps lead
// into it. A failed check fails the whole transaction: nothing changes.
func (r Rules) Apply(fams ...string) (string, error) {
	return r.render(r.Jumps, r.Jumps, true, fams)
}

// apply renders the chain with the PREROUTING jump when pre and the OUTPUT
// jump when out, for the families fams (none: both), declaring the chain
// (created, or flushed if it exists): for Install, which has checked the
// chain is nexmux's.
func (r Rules) apply(pre, out bool, fams []string) (string, error) {
	return r.render(pre, out, false, fams)
}

// render is apply, or Apply's self-guarding text when piped.
func (r Rules) render(pre, out, piped bool, fams []string) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	ports := append([]int(nil), r.Ports...)
	sort.Ints(ports)
	c := r.chain()
	if len(fams) == 0 {
		fams = Families
	}
	restore := make([]string, len(fams))
	for i, f := range fams {
		restore[i] = f + "-restore --noflush"
	}
	var b strings.Builder
	b.WriteString("# nexmux: legacy connector ports -> nexmux's listener. Apply with\n")
	fmt.Fprintf(&b, "#   %s\n", strings.Join(restore, "  and  "))
	switch {
	case piped && (pre || out):
		fmt.Fprintf(&b, "# once: they create chain %s, so applied again, or where a chain of that\n", c)
		b.WriteString("# name exists, they fail and change nothing; re-apply with --jumps=false,\n")
		b.WriteString("# or apply idempotently with --load\n")
	case piped:
		fmt.Fprintf(&b, "# over the rules applied before: they replace chain %s's rules, and fail,\n", c)
		fmt.Fprintf(&b, "# changing nothing, unless nexmux's PREROUTING and OUTPUT jumps lead to %s\n", c)
	}
	b.WriteString("*nat\n")
	if piped && (pre || out) {
		fmt.Fprintf(&b, "-N %s\n", c)
	} else {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	if piped && !pre && !out {
		// The jumps nexmux writes are its mark on the chain: one that
		// lacks them is not emptied.
		fmt.Fprintf(&b, "-C %s\n", strings.Join(jump("PREROUTING", c), " "))
		fmt.Fprintf(&b, "-C %s\n", strings.Join(jump("OUTPUT", c), " "))
	}
	// Remote clients arrive through PREROUTING; clients on this host
	// (Nexus's own health checks, a local docker) through OUTPUT. Both are
	// limited to local destinations: a host that also routes (docker
	// bridge, Kubernetes node, VPN) must not capture traffic it only
	// forwards to other hosts' port 8082.
	if pre {
		fmt.Fprintf(&b, "-A %s\n", strings.Join(jump("PREROUTING", c), " "))
	}
	if out {
		fmt.Fprintf(&b, "-A %s\n", strings.Join(jump("OUTPUT", c), " "))
	}
	for _, p := range ports {
		fmt.Fprintf(&b, "-A %s -p tcp --dport %d -m comment --comment %s -j REDIRECT --to-ports %d\n", c, p, comment, r.ListenPort)
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

// Delete renders the removal: the two jumps, then the chain itself. It only
// names rules Apply wrote, so nothing else in the nat table is touched.
func (r Rules) Delete() (string, error) {
	return r.delete(1, 1)
}

// delete renders the removal, with as many copies of each jump as exist:
// -D of a missing rule fails the whole transaction, and so does -X of a
// chain a copy left behind still jumps to.
func (r Rules) delete(pre, out int) (string, error) {
	if err := r.ValidateChain(); err != nil {
		return "", err
	}
	c := r.chain()
	var b strings.Builder
	b.WriteString("*nat\n")
	for range pre {
		fmt.Fprintf(&b, "-D %s\n", strings.Join(jump("PREROUTING", c), " "))
	}
	for range out {
		fmt.Fprintf(&b, "-D %s\n", strings.Join(jump("OUTPUT", c), " "))
	}
	fmt.Fprintf(&b, "-F %s\n", c)
	fmt.Fprintf(&b, "-X %s\n", c)
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

// ListenWarning says when the rules cannot reach the listener from
// everywhere: REDIRECT sends a remote client's connection (PREROUTING) to
// the receiving interface's own address and a local client's (OUTPUT) to
// loopback, so only a wildcard listener sees both.
func ListenWarning(listen string) string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return ""
	}
	ip, perr := netip.ParseAddr(host)
	ip = ip.Unmap() // Go binds an IPv4-mapped address as the IPv4 one
	switch {
	case perr == nil && ip.IsUnspecified():
		return ""
	case (perr == nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost"):
		return fmt.Sprintf("listen %s is a loopback address: connections REDIRECTed from other hosts (PREROUTING) arrive on the interface's own address and cannot reach it, only clients on this host (OUTPUT) can; listen on :PORT", listen)
	default:
		return fmt.Sprintf("listen %s is one address: connections REDIRECTed from this host's own clients (OUTPUT) arrive on loopback and cannot reach it, only other hosts' clients (PREROUTING) can; listen on :PORT", listen)
	}
}
