package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"

	"github.com/nexmux/nexmux/l7"
)

// DefaultMaxRequestsPerClient bounds one client address's requests in
// flight: far above what docker, containerd or BuildKit run at once (a few
// layers per image), far below Jetty's 400 threads, and room for a CI
// fleet behind one NAT address.
const DefaultMaxRequestsPerClient = 128

// Connection limits from the file-descriptor limit (Go raises the soft
// limit to the hard one at start): a terminated connection holds about two
// descriptors (client, pooled Nexus connection), and 128 stay for
// listeners, files and logs. Without a limit, 3,000 half-sent
// ClientHellos held ~130 MiB until the routing deadline; the cap of 16384
// keeps idle TLS connections below ~1 GiB on hosts with huge fd limits.
var (
	DefaultMaxConns          = maxConnsFor(nofile())
	DefaultMaxConnsPerClient = perClientFor(DefaultMaxConns)
)

func maxConnsFor(fds uint64) int {
	return int(min(max((int64(fds)-128)/2, 64), 16384))
}

// perClientFor leaves any one address an eighth of the slots: far more
// than a docker/containerd client opens, room for a NAT'd CI fleet, and
// never all of them.
func perClientFor(maxConns int) int { return min(max(maxConns/8, 16), 256) }

// checkHardening validates the issue-17 settings (limits, header hygiene),
// appending every problem to errs.
func (c *Config) checkHardening(errs *multierror.Error) *multierror.Error {
	for _, h := range c.StripHeader {
		// Blanks around are trimmed where the name is applied (l7's
		// stripSet, RestartNeeded): only the name itself is checked.
		if !isToken(strings.TrimSpace(h)) {
			errs = multierror.Append(errs, fmt.Errorf("strip-header %q: not a header name", h))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max-requests-per-client", c.MaxRequestsPerClient}, {"max-conns-per-client", c.MaxConnsPerClient}} {
		if n.v < 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s %d: must not be negative", n.name, n.v))
		}
	}
	if p := c.PerClientIPv6Prefix; p < 0 || p > 128 {
		errs = multierror.Append(errs, fmt.Errorf("per-client-ipv6-prefix %d: must be 1 to 128 (0: 128)", p))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"passthrough-idle-timeout", c.PassthroughIdleTimeout}, {"max-conn-age", c.MaxConnAge}, {"body-timeout", c.BodyTimeout}, {"send-timeout", c.SendTimeout}} {
		if d.v < 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s %v: must not be negative", d.name, d.v))
		}
	}
	return errs
}

// limitWarnings names limit settings that leave Nexus or nexmux
// unprotected: without per-client limits one client address can hold every
// connection to a node (Jetty threads), with uploads that keep moving at
// the --body-timeout pace (with them, it holds at most half: l7's
// per-client shares of a node's places); one allowed as many connections
// as --max-conns can hold every place. Each limit whose 0 turns it off
// warns of that 0 (TestBuildWarnsOfEveryLimitTurnedOff); one whose 0 is
// its built-in default, or a normal choice (--max-conn-age, which only
// recycles busy connections), does not.
func (c *Config) limitWarnings() []string {
	var out []string
	perNode := c.UpstreamMaxConns
	if perNode == 0 {
		perNode = l7.DefaultUpstreamMaxConns
	}
	if c.MaxConns == 0 {
		limit := fmt.Sprint(nofile())
		if nofile() >= 1<<62 { // RLIM_INFINITY, where a system allows it
			limit = "none"
		}
		out = append(out, fmt.Sprintf("max-conns 0 (no limit): connections are taken until nexmux runs out of file descriptors (limit %s), the metrics listener's included", limit))
	}
	if c.MaxConnsPerClient == 0 {
		if c.MaxConns == 0 {
			out = append(out, "max-conns-per-client 0 (no limit): one client address can hold every connection nexmux takes")
		} else {
			out = append(out, fmt.Sprintf("max-conns-per-client 0 (no limit): one client address can hold all %d connection places (max-conns)", c.MaxConns))
		}
	}
	if c.MaxRequestsPerClient == 0 {
		out = append(out, fmt.Sprintf("max-requests-per-client 0 (no limit): one client address can hold all %d connections to a Nexus node (upstream-max-conns)", perNode))
	}
	if c.BodyTimeout == 0 {
		out = append(out, fmt.Sprintf("body-timeout 0 (never): a client that stops sending a request body holds its connection to a Nexus node (one of upstream-max-conns %d) for good", perNode))
	}
	if c.SendTimeout == 0 {
		out = append(out, fmt.Sprintf("send-timeout 0 (never): a client that stops reading a response holds its connection, and for a large response one to a Nexus node (of upstream-max-conns %d), for good", perNode))
	}
	// The per-client default comes from --max-conns' default, not from a
	// lower --max-conns given, so lowering the one can defeat the other.
	if c.MaxConns > 0 && c.MaxConnsPerClient >= c.MaxConns {
		out = append(out, fmt.Sprintf("max-conns-per-client %d is not below max-conns %d: one client address can hold every connection (lower max-conns-per-client too)", c.MaxConnsPerClient, c.MaxConns))
	}
	return out
}

// isToken reports an RFC 9110 token (a header field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}
