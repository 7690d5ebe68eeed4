package daemon

import "os"

// NEXMUX_TEST_UPSTREAM_TRANSPORT=sync runs the daemon tests over the
// synchronous upstream transport (the --upstream-transport experiment).
func init() {
	if v := os.Getenv("NEXMUX_TEST_UPSTREAM_TRANSPORT"); v != "" {
		upstreamTransport = func(string) string { return v }
	}
}
