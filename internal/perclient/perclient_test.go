package perclient

import (
	"net/netip"
	"testing"
)

// Each address gets Max places, apart from the others; a place given back
// can be taken again; IPv4-mapped and plain IPv4 are one client; an address
// holding nothing leaves no entry behind.
func TestCounter(t *testing.T) {
	c := Counter{Max: 2}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	if !c.Acquire(a) || !c.Acquire(mapped) {
		t.Fatal("first two places refused")
	}
	if c.Acquire(a) {
		t.Fatal("third place for the same client (plain and IPv4-mapped) given")
	}
	if !c.Acquire(b) {
		t.Fatal("another client refused")
	}
	if n := c.Total(); n != 3 {
		t.Fatalf("Total %d, want 3", n)
	}
	c.Release(a)
	if !c.Acquire(mapped) {
		t.Fatal("place given back not taken again")
	}
	c.Release(a)
	c.Release(a)
	c.Release(b)
	if len(c.n) != 0 || c.Total() != 0 {
		t.Fatalf("entries left for clients holding nothing: %v", c.n)
	}
	var unlimited Counter
	for range 1000 {
		if !unlimited.Acquire(a) {
			t.Fatal("Max 0 refused")
		}
	}
}
