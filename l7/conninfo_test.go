package l7

import (
	"net/netip"
	"testing"
)

// An IPv4 client of a dual-stack listener arrives v4-mapped; logs name it
// as X-Forwarded-For and the per-client limits do, a.b.c.d:port.
func TestClientStringUnmapsIPv4(t *testing.T) {
	for in, want := range map[string]string{
		"[::ffff:10.0.0.1]:5000": "10.0.0.1:5000",
		"10.0.0.1:5000":          "10.0.0.1:5000",
		"[2001:db8::1]:5000":     "[2001:db8::1]:5000",
	} {
		ci := &ConnInfo{Client: netip.MustParseAddrPort(in)}
		if got := ci.ClientString(); got != want {
			t.Errorf("ClientString of %s = %s, want %s", in, got, want)
		}
		if got := ci.texts().xff[0]; got != netip.MustParseAddrPort(want).Addr().String() {
			t.Errorf("X-Forwarded-For of %s = %s", in, got)
		}
	}
}
