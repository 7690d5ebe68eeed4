//go:build linux

package mux_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nexmux/nexmux/internal/iptables"
	"github.com/nexmux/nexmux/internal/netns"
	"github.com/nexmux/nexmux/internal/testnet"
)

var netnsSeq atomic.Int64

// redirectingNetns makes a network namespace, deleted when t ends, whose
// OUTPUT chain REDIRECTs ports to listenPort over IPv4 and IPv6 (the rules
// `nexmux iptables` prints). It skips without root or the tools, unless
// NEXMUX_REQUIRE_NETNS is set (CI), where it fails instead.
func redirectingNetns(t *testing.T, listenPort int, ports ...int) string {
	t.Helper()
	testnet.RequireNetns(t)
	run := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	name := fmt.Sprintf("nxm-%d-%d", os.Getpid(), netnsSeq.Add(1))
	_ = exec.Command("ip", "netns", "del", name).Run() // left by a killed run
	run("", "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run("", "ip", "-n", name, "link", "set", "lo", "up")
	rules, err := iptables.Rules{ListenPort: listenPort, Ports: ports, Jumps: true}.Apply()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		run(rules, "ip", "netns", "exec", name, tool, "--noflush")
	}
	return "/run/netns/" + name
}

// TestReloadRevokesConnectionWhosePortGotARoute through real REDIRECTs:
// the port comes from SO_ORIGINAL_DST (IPv4, and IP6T_SO_ORIGINAL_DST),
// which nexmux does not read while no port has a route, so a reload that
// brings the first one must still find the connections it moves.
func TestReloadRevokesRedirectedConnectionWhosePortGotARoute(t *testing.T) {
	for name, before := range map[string][]string{
		"no port route before":      nil,
		"another port route before": {"8083=team-q"},
	} {
		t.Run(name, func(t *testing.T) {
			ns := redirectingNetns(t, 8443, 8082, 8083, 8084)
			m := startMuxWith(t, muxConfig{ports: before, listen: func() (ln net.Listener, err error) {
				err = netns.Do(ns, func() error { ln, err = net.Listen("tcp", "[::]:8443"); return err })
				return ln, err
			}})
			for _, host := range []string{"127.0.0.1", "::1"} {
				dialPort := func(port int) func() (net.Conn, error) {
					return func() (c net.Conn, err error) {
						err = netns.Do(ns, func() error {
							c, err = net.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
							return err
						})
						return c, err
					}
				}
				moved := dialKept(t, m, dialPort(8082), "", "team-a.nexmux.test", "team-a.nexmux.test")
				stays := dialKept(t, m, dialPort(8084), "", "team-a.nexmux.test", "team-a.nexmux.test")
				direct := dialKept(t, m, dialPort(8443), "", "team-a.nexmux.test", "team-a.nexmux.test")

				m.srv.Update(withPorts(t, m.srv, append([]string{"8082=team-p"}, before...)...))

				if got, err := moved.get("team-a.nexmux.test"); err == nil {
					t.Errorf("%s: the connection redirected from 8082 is still served after 8082 got a route: route %q", host, got)
				}
				for what, k := range map[string]keptConn{"redirected from 8084 (no route)": stays, "to the listener itself": direct} {
					if got, err := k.get("team-a.nexmux.test"); err != nil || got != "team-a.nexmux.test" {
						t.Errorf("%s: the connection %s: route %q (%v), want team-a.nexmux.test", host, what, got, err)
					}
				}
				dialKept(t, m, dialPort(8082), "", "team-a.nexmux.test", ":8082")
				m.srv.Update(withPorts(t, m.srv, before...))
			}
		})
	}
}
