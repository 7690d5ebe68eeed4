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
