package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A 101 from Nexus to a request that asked for no upgrade (nexmux forwards
// none) is a broken answer: it is refused, and the node's in-flight count
// and --upstream-max-conns slot come back. ReverseProxy never closes such a
// response's body, so before they stayed taken for good, and with one slot
// the next request got "every connection to Nexus is busy".
func TestUnaskedSwitchingProtocolsReleasesSlot(t *testing.T) {
	n := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") && strings.Contains(r.URL.Path, "/switch") {
			w.WriteHeader(http.StatusSwitchingProtocols)
		}
	})
	addr, up := haProxy(t, io.Discard, 1, n)
	resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/switch", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("101 from Nexus: %s %s, want 502", resp.Status, body)
	}
	node := up.Set().Nodes()[0]
	waitUntil(t, "the node's in-flight count back at 0", func() bool { return node.InFlight() == 0 })
	if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("next request: %s %s (the 101 kept the node's only slot)", resp.Status, body)
	}
}
