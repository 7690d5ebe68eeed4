package daemon_test

import (
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// TestMavenAgentCannotHoldNexusThreads: Nexus's ExhaustRequestFilter
// reads the whole body of a PUT or POST it refused (401 included) when
// the User-Agent is Apache Maven's or Ivy's, and sends the refusal only
// then. Through nexmux an anonymous client could so hold a Jetty thread,
// and one of nexmux's --upstream-max-conns places, for as long as it
// trickles a body, where any other agent's refusal comes at once. nexmux
// refuses such requests itself; no registry client is Maven or Ivy.
func TestMavenAgentCannotHoldNexusThreads(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	host := "team-a.nexmux.test:" + itoa(st.Port)
	for _, ua := range []string{"Apache-Maven/3.9.6 (Java 21.0.2; Linux 6.8)", "Apache Ivy/2.5.2"} {
		for _, head := range []string{
			"PUT /v2/app/blobs/uploads/0b1c2d3e-aaaa-4bbb-8ccc-0123456789ab?digest=sha256%3A" + strings.Repeat("0", 64) + " HTTP/1.1",
			"POST /v2/app/blobs/uploads/ HTTP/1.1",
		} {
			st.Nexus.ResetRequests()
			// A body announced at 1 MiB, of which 16 bytes come: the rest
			// never does while the answer is awaited.
			raw := head + "\r\nHost: " + host + "\r\nUser-Agent: " + ua + "\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n" + strings.Repeat("x", 16)
			res := rawExchange(st, "team-a.nexmux.test", []byte(raw), 1, "PUT")
			if res.err != nil {
				t.Errorf("%s (%s): %v; Nexus waits for the whole body before it answers", head, ua, res.err)
				continue
			}
			if s := res.statuses[0]; s < 400 || s >= 500 || !strings.Contains(res.bodies[0], `"code":"UNSUPPORTED"`) {
				t.Errorf("%s (%s): %d %.200s, want nexmux's 4xx UNSUPPORTED", head, ua, s, res.bodies[0])
			}
			if n := len(st.Nexus.Requests()); n != 0 {
				t.Errorf("%s (%s) reached Nexus", head, ua)
			}
		}
	}
	// Other agents, and Maven's reads, still go through.
	res := rawExchange(st, "team-a.nexmux.test", []byte("POST /v2/app/blobs/uploads/ HTTP/1.1\r\nHost: "+host+"\r\nUser-Agent: docker/27.0.3\r\nContent-Length: 0\r\n\r\n"), 1, "POST")
	if res.err != nil || res.statuses[0] != 401 {
		t.Errorf("docker's anonymous POST: %v %v, want Nexus's 401", res.statuses, res.err)
	}
	res = rawExchange(st, "team-a.nexmux.test", []byte("GET /v2/ HTTP/1.1\r\nHost: "+host+"\r\nUser-Agent: Apache-Maven/3.9.6\r\n\r\n"), 1, "GET")
	if res.err != nil || res.statuses[0] != 401 {
		t.Errorf("Maven's GET /v2/: %v %v, want Nexus's 401", res.statuses, res.err)
	}
}
