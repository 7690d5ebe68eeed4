package l7

import (
	"net"
	"net/http"
	"testing"
)

// A node's host found inside a longer name or address is not the node:
// the public name the URLs were just mapped onto may hold it (a team's
// name under the node's domain, an address the node's is a prefix of).
func TestHideNodeHeadersKeepsNamesHoldingTheNodesHost(t *testing.T) {
	for _, c := range []struct{ node, public, k, v string }{
		{"registry.example.com:8081", "team-a.registry.example.com", "Location", "https://team-a.registry.example.com/v2/app/blobs/uploads/u1?_nexmux=x"},
		{"registry.example.com:8081", "team-a.registry.example.com", "Www-Authenticate", `Bearer realm="https://team-a.registry.example.com/v2/token",service="https://team-a.registry.example.com/v2/token"`},
		{"nexus.lan:8081", "docker.nexus.lan", "Location", "https://docker.nexus.lan/v2/app/manifests/1"},
		{"10.0.0.1:8081", "10.0.0.10:5000", "Location", "http://10.0.0.10:5000/v2/app/blobs/uploads/u1?_nexmux=x"},
		{"192.168.1.1:8081", "192.168.1.12:5000", "Location", "http://192.168.1.12:5000/v2/app/blobs/uploads/u1"},
	} {
		h := http.Header{c.k: {c.v}}
		hideNodeHeaders(h, c.node, c.public, false)
		if h.Get(c.k) != c.v {
			t.Errorf("node %s, public name %s: %s %q left out, want kept", c.node, c.public, c.k, c.v)
		}
	}
}

// Through the proxy: a client naming nexmux by an address the node's is a
// prefix of (node 127.0.0.1, nexmux 127.0.0.10) gets its upload's Location.
func TestPublicAddressHoldingTheNodesKeepsItsLocation(t *testing.T) {
	uploadLocationOnPublicName(t, func(node string) string {
		if host, _, _ := net.SplitHostPort(node); host != "127.0.0.1" {
			return ""
		}
		return "127.0.0.10:5000"
	})
}

// An error's words hold the node's address only where it stands alone:
// a public name that holds the node's host (Nexus writes URLs on the name
// the client used) keeps its own words, while the node itself, in any
// case, still reads "Nexus".
func TestHideNodeKeepsNamesHoldingTheNodesHost(t *testing.T) {
	for _, c := range []struct{ node, words, want string }{
		{"registry.example.com:8081", "blob unknown to https://team-a.registry.example.com/v2/app", "blob unknown to https://team-a.registry.example.com/v2/app"},
		{"registry.example.com:8081", "registry.example.com.team-a.lan refused", "registry.example.com.team-a.lan refused"},
		{"nexus.lan:8081", "docker.nexus.lan: manifest unknown", "docker.nexus.lan: manifest unknown"},
		{"10.0.0.1:8081", "upload at http://10.0.0.10:5000/v2/app refused", "upload at http://10.0.0.10:5000/v2/app refused"},
		{"registry.example.com:8081", "http://registry.example.com:8081/repository/team-a is down (registry.example.com)", "http://Nexus/repository/team-a is down (Nexus)"},
		{"registry.example.com:8081", "team-a.registry.example.com behind registry.example.com.", "team-a.registry.example.com behind Nexus."},
		{"registry.example.com:8081", "Registry.Example.COM:8081 is down", "Nexus is down"},
		{"10.0.0.1:8081", "10.0.0.10 and 10.0.0.1 and %2010.0.0.1:8081", "10.0.0.10 and Nexus and %20Nexus"},
		{"[fd00::1]:8081", "fd00::1 at [fd00::1]:8081, not fd00::10", "Nexus at Nexus, not fd00::10"},
	} {
		if got := hideNode(c.words, c.node, ""); got != c.want {
			t.Errorf("node %s: %q reads %q, want %q", c.node, c.words, got, c.want)
		}
	}
}
