package daemon_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A path that is not a valid raw path ('#', '|', '{' unescaped) is refused
// with 400 instead of being re-escaped on its way to Nexus; valid ones go
// byte for byte (TestRawPathAndQueryForwardedUnchanged).
func TestInvalidRawPathRefusedNotReescaped(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: teamRoutes()})
	for _, path := range []string{"/v2/a#b/manifests/1", "/v2/a|b/tags/list", "/v2/app/manifests/{x}", `/v2/app/manifests/"1"`} {
		st.Nexus.ResetRequests()
		raw := "GET " + path + " HTTP/1.1\r\nHost: " + st.Host("team-a") + "\r\nConnection: close\r\n\r\n"
		res := rawExchange(st, "team-a.nexmux.test", []byte(raw), 1, http.MethodGet)
		if res.err != nil {
			t.Fatalf("%s: %v", path, res.err)
		}
		if res.statuses[0] != http.StatusBadRequest || !strings.Contains(res.bodies[0], "NAME_INVALID") {
			t.Errorf("%s: %d %s, want 400 NAME_INVALID", path, res.statuses[0], res.bodies[0])
		}
		for _, r := range st.Nexus.Requests() {
			t.Errorf("%s reached Nexus as %q", path, r.RawPath)
		}
	}
}
