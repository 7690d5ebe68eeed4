package config

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/netns"
)

// inLinkLocalNetns runs f, with the link-local address (zoned) of a veth
// interface, inside a scratch network namespace: for hosts whose
// interfaces have none (IPv6 off in a container). It skips without root,
// or fails where NEXMUX_REQUIRE_NETNS is set (CI).
func inLinkLocalNetns(t *testing.T, f func(ll string)) {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("NEXMUX_REQUIRE_NETNS") != "" {
			t.Fatalf("NEXMUX_REQUIRE_NETNS is set but "+format, args...)
		}
		t.Skipf("no IPv6 link-local address on this host, and "+format, args...)
	}
	if os.Geteuid() != 0 {
		unavailable("a scratch network namespace needs root")
	}
	name := fmt.Sprintf("nexmux-ll-%d", os.Getpid())
	ip := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := ip("netns", "add", name); err != nil {
		unavailable("%v", err)
	}
	t.Cleanup(func() { _ = ip("netns", "del", name) })
	for _, args := range [][]string{
		{"netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0"},
		// A veth pair: dummy interfaces need a module containers often lack.
		{"-n", name, "link", "add", "ll0", "type", "veth", "peer", "name", "ll1"},
		{"-n", name, "link", "set", "ll0", "up"},
		{"-n", name, "link", "set", "ll1", "up"},
	} {
		if err := ip(args...); err != nil {
			unavailable("%v", err)
		}
	}
	// The kernel gives the interface its link-local address once it is up
	// (after duplicate address detection: about a second).
	var ll string
	for deadline := time.Now().Add(10 * time.Second); ll == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, _ := exec.Command("ip", "-n", name, "-6", "-o", "addr", "show", "dev", "ll0", "scope", "link", "-tentative").Output()
		if fields := strings.Fields(string(out)); len(fields) >= 4 {
			ll = strings.Split(fields[3], "/")[0] + "%ll0"
		}
	}
	if ll == "" {
		t.Fatal("the veth interface got no link-local address")
	}
	if err := netns.Do("/var/run/netns/"+name, func() error { f(ll); return nil }); err != nil {
		t.Fatal(err)
	}
}
