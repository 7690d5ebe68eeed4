package socks5

import (
	"net/netip"
	"testing"

	"github.com/nexmux/nexmux/internal/perclient"
	"github.com/nexmux/nexmux/internal/testnet"
)

// A client over its own pending limit takes no shared place, not even for
// a moment: another client that fits is never refused because of it.
func TestPendingRefusalHoldsNoSharedPlace(t *testing.T) {
	p := &pending{max: 2, by: perclient.Counter{Max: 1}}
	x, y := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	if ok, _ := p.take(x); !ok {
		t.Fatal("first session of 10.0.0.1 refused")
	}
	stop := testnet.Hammer(4, func() bool {
		if ok, _ := p.take(x); ok {
			t.Error("a second session of 10.0.0.1 taken")
			return false
		}
		return true
	})
	refused := 0
	for range 20000 {
		if ok, _ := p.take(y); !ok {
			refused++
			continue
		}
		p.give(y)
	}
	stop()
	if refused > 0 {
		t.Fatalf("10.0.0.2 refused %d times of 20000 with a place free", refused)
	}
	if p.give(x); p.n.Load() != 0 || p.by.Total() != 0 {
		t.Fatalf("counts left: %d shared, %d per client", p.n.Load(), p.by.Total())
	}
}
