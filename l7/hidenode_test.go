package l7

import (
	"net/http"
	"strings"
	"testing"
)

// BenchmarkHideNodeHeaders is the node-address check on a manifest
// answer's headers, the check every answer goes through, with a node
// named by letters (searched for in any case) and by address.
func BenchmarkHideNodeHeaders(b *testing.B) {
	answer := http.Header{
		"Content-Type":                    {"application/vnd.docker.distribution.manifest.v2+json"},
		"Content-Length":                  {"528"},
		"Docker-Content-Digest":           {"sha256:0b1c0d3647a14a368a0e1f2f3f4f5f6f0b1c0d3647a14a368a0e1f2f3f4f5f6f"},
		"Docker-Distribution-Api-Version": {"registry/2.0"},
		"Etag":                            {`"sha256:0b1c0d3647a14a368a0e1f2f3f4f5f6f0b1c0d3647a14a368a0e1f2f3f4f5f6f"`},
		"Date":                            {"Sun, 06 Dec 2026 19:00:00 GMT"},
		"X-Content-Type-Options":          {"nosniff"},
		"Last-Modified":                   {"Sun, 06 Dec 2026 18:00:00 GMT"},
	}
	for _, node := range []string{"nexus.internal.example.com:8081", "10.0.0.7:8081", "nexus"} {
		b.Run(node, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				hideNodeHeaders(answer, node, "team-a.example.com", false)
			}
			if len(answer) != 8 {
				b.Fatalf("%d headers kept, want 8", len(answer))
			}
		})
	}
}

// TestNodeNeedleFindAgreesWithPlainSearch: the search by the needle's
// first separator finds what a plain search (folding ASCII letters) finds,
// at every offset, in any case, with the needle cut or repeated.
func TestNodeNeedleFindAgreesWithPlainSearch(t *testing.T) {
	needles := []string{"nexus.lan:8081", "10.0.0.7:8081", "10.0.0.7", "[fd00::7]:8081", "fd00::7", "nexus", "a.b", ".", "x-y.z"}
	for _, s := range needles {
		n := newNodeNeedle(s)
		for _, v := range []string{
			"", s, strings.ToUpper(s), s + s, "x" + s + "y", s[:len(s)-1], s[1:],
			"http://" + strings.ToUpper(s[:1]) + s[1:] + "/v2/",
			"a." + s + ".b:" + s, "sha256:0b1c0d3647a14a36." + s[:len(s)/2] + "." + s,
			strings.Repeat(".", 20) + s, "..::" + strings.ToUpper(s) + "::..",
		} {
			if got, want := n.find(v), strings.Index(asciiLower(v), s); got != want {
				t.Errorf("needle %q in %q: at %d, a plain search finds %d", s, v, got, want)
			}
		}
	}
}

// FuzzNodeNeedle holds the search by the node's first separator to a
// plain search that folds ASCII letters: for any node (lowercase, as
// nodeNeedles makes it) and any header value, both find the same first
// place, and a value naming the node standing alone is seen.
func FuzzNodeNeedle(f *testing.F) {
	f.Add("nexus.lan:8081", "http://NEXUS.lan:8081/v2/")
	f.Add("10.0.0.7", "10.0.0.70, 10.0.0.7")
	f.Add("[fd00::7]:8081", "x[FD00::7]:8081")
	f.Add("nexus", "Nexus nexus")
	f.Fuzz(func(t *testing.T, node, v string) {
		node = strings.ToLower(node)
		if node == "" {
			return
		}
		n := newNodeNeedle(node)
		if got, want := n.find(v), strings.Index(asciiLower(v), node); got != want {
			t.Fatalf("node %q in %q: found at %d, a plain search at %d", node, v, got, want)
		}
		if alone := " " + node + " "; !n.in(alone) {
			t.Fatalf("node %q standing alone in %q not seen", node, alone)
		}
	})
}

// asciiLower is s with its ASCII letters lowercase and every other byte as
// it is (strings.ToLower would turn a byte that is no UTF-8 into U+FFFD,
// moving what follows): the tests' own folding, independent of l7's.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
