package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkFileLinerLongList names the line of every item of a long list
// (a file of clashing routes reports each): linear in the list, a scan of
// the list per item made a file of 200,000 take minutes.
func BenchmarkFileLinerLongList(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var sb strings.Builder
			sb.WriteString("route:\n")
			for i := range n {
				fmt.Fprintf(&sb, "  - h.example.com=r%d\n", i)
			}
			p := filepath.Join(b.TempDir(), "nexmux.yaml")
			if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
				b.Fatal(err)
			}
			c := Defaults()
			if err := c.ApplyFile(p); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(n), "items")
			for b.Loop() {
				line := c.FileLiner()
				for i, r := range c.Route {
					if got := line("route", r); got != i+2 {
						b.Fatalf("item %d on line %d, want %d", i, got, i+2)
					}
				}
			}
		})
	}
}
