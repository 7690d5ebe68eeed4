package upstream

import (
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
)

// The prober's idle connections close before Jetty's do, whatever
// --health-interval is.
func TestProbeIdleBelowJettys(t *testing.T) {
	for _, interval := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, time.Minute} {
		if got := probeIdle(interval); got <= 0 || got > fixtures.JettyIdleTimeout-5*time.Second {
			t.Errorf("--health-interval %v: probe idle timeout %v, want below Jetty's %v less 5s", interval, got, fixtures.JettyIdleTimeout)
		}
	}
}
