package l7

import (
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
)

// Jetty closes a connection idle for 30 s (fixtures.JettyIdleTimeout). A
// pooled connection to Nexus must be dropped well before that: reused just
// as Jetty closes it, it fails the request it carries, and an upload's body
// cannot be sent again. A margin of seconds covers the clocks of the two
// ends starting apart (last byte written here, last byte read there).
func TestUpstreamIdleBelowJettys(t *testing.T) {
	const margin = 5 * time.Second
	if got := NewTransport().IdleConnTimeout; got <= 0 || got > fixtures.JettyIdleTimeout-margin {
		t.Fatalf("upstream IdleConnTimeout %v: want set and at most Jetty's %v less 5s", got, fixtures.JettyIdleTimeout)
	}
}

// Jetty serves a Nexus node's requests with one pool of threads
// (fixtures.JettyWorkerThreads), shared by every connector and the UI.
// nexmux's default share of one node stays well below it, so a replica
// whose clients stall uploads or stop reading leaves threads for Nexus's
// other users (TestUpstreamPoolOverflow: requests beyond it never reach
// the node).
func TestUpstreamMaxConnsBelowJettyThreads(t *testing.T) {
	if DefaultUpstreamMaxConns <= 0 || DefaultUpstreamMaxConns > fixtures.JettyWorkerThreads/2 {
		t.Fatalf("DefaultUpstreamMaxConns %d: want at most half of Jetty's %d threads", DefaultUpstreamMaxConns, fixtures.JettyWorkerThreads)
	}
}
