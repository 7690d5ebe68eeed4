package upstream

import (
	"fmt"
	"testing"
)

// BenchmarkPick is the node choice each proxied request makes (PickAppend
// into the caller's buffer, as the failover transport calls it): with
// several nodes it reads every node's state and cost (the bench's
// node-count row compares nexmux's CPU per request).
func BenchmarkPick(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		var raw []string
		for i := range nodes {
			raw = append(raw, fmt.Sprintf("http://nexus-%d:8081", i))
		}
		spec, err := ParseSpec(raw, nil)
		if err != nil {
			b.Fatal(err)
		}
		s := NewSet(spec, quiet())
		for _, kind := range []struct {
			name string
			k    Kind
			key  string
		}{{"read", Read, ""}, {"digest", ReadDigest, "bench@sha256:0123"}} {
			b.Run(fmt.Sprintf("nodes=%d/%s", nodes, kind.name), func(b *testing.B) {
				b.ReportAllocs()
				var buf [4]*Node
				for b.Loop() {
					// As the failover transport does: into its buffer.
					if _, err := s.PickAppend(buf[:0], kind.k, kind.key); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
