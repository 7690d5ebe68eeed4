package daemon_test

import (
	"testing"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// A fresh process lists every counter series the README names at 0, so
// increase() and rate() see their first event: a series born at 1 hides
// it (an alert on the first failed reload after a restart never fired).
func TestFreshMetricsStartAtZero(t *testing.T) {
	c := config.Defaults()
	c.Port = []string{"18082=team-a"}
	c.Upstream = []string{"http://nexus-0:8081", "http://nexus-1:8081"}
	b, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(b, daemon.Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	families, err := d.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			k := f.GetName()
			for _, l := range m.GetLabel() {
				k += " " + l.GetName() + "=" + l.GetValue()
			}
			got[k] = true
		}
	}
	var want []string
	for _, r := range []string{"ok", "error"} {
		want = append(want, "nexmux_reloads_total result="+r)
	}
	// README, Operating it: the reasons of nexmux_handshake_failures_total.
	for _, r := range []string{"no_sni", "unknown_sni", "malformed_hello", "timeout", "not_tls",
		"no_port_route", "proxy_header", "max_conns", "max_conns_per_client",
		"socks5_denied", "socks5_auth", "socks5_pending", "passthrough_dial", "tls_handshake", "closed",
		"malformed_request"} {
		want = append(want, "nexmux_handshake_failures_total reason="+r)
	}
	// README, HA: kind read/write, reason connect, reset, down, status,
	// busy, local.
	for _, k := range []string{"read", "write"} {
		for _, r := range []string{"connect", "reset", "down", "status", "busy", "local"} {
			want = append(want, "nexmux_upstream_failovers_total kind="+k+" reason="+r)
		}
	}
	// README, HA: probes set aside, per node.
	for _, n := range []string{"nexus-0:8081", "nexus-1:8081"} {
		for _, r := range []string{"busy", "local"} {
			want = append(want, "nexmux_upstream_probes_set_aside_total node="+n+" reason="+r)
		}
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("fresh /metrics lacks %s", w)
		}
	}
}
