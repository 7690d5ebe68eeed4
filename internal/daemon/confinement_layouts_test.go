package daemon_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// TestConfinementAcrossLayouts carries TestConfinementTable's question
// (does anything from team-a's name reach Nexus outside team-a's registry
// API?) to what that table does not lay out: a Nexus context path, a
// --port route (plain HTTP, or TLS naming another team), v1 and token
// paths, _catalog and queries that carry paths, and spellings checkPath
// meets only in unit tests (Jetty 9's %u, 3-byte overlong dots, encoded
// "v2" or repository names). Every refusal must be a registry JSON error.
func TestConfinementAcrossLayouts(t *testing.T) {
	for _, ctxPath := range []string{"", "/nexus"} {
		t.Run("ctx="+ctxPath, func(t *testing.T) { confineLayout(t, ctxPath) })
	}
}

func confineLayout(t *testing.T, ctxPath string) {
	repos := stack.TeamRepos("team-a", "team-b")
	for i := range repos {
		repos[i].V1Enabled = true
	}
	cfg := confinedRoutes()
	port := freePort(t)
	cfg.Port = []string{fmt.Sprintf("%d=team-a", port)}
	cfg.BindPorts = true
	st := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{ContextPath: ctxPath, Repos: repos}})
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	for repo, name := range map[string]string{"team-a-hosted": "app", "team-b-hosted": "secret/app"} {
		if err := st.Nexus.Seed(repo, name, "1", img); err != nil {
			t.Fatal(err)
		}
	}
	nexusHost := strings.TrimPrefix(strings.TrimSuffix(st.NexusURL, ctxPath), "http://")
	portAddr := net.JoinHostPort("127.0.0.1", itoa(port))
	repl := strings.NewReplacer("{A}", st.Host("team-a"), "{B}", st.Host("team-b"), "{AUTH}", basicAuth(),
		"{CTX}", ctxPath, "{NX}", nexusHost, "{P}", portAddr)
	get := func(target string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: {A}\r\nAuthorization: {AUTH}\r\n\r\n"
	}
	getAt := func(host, target string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: {AUTH}\r\n\r\n"
	}
	const (
		onName     = iota // TLS to the listener, SNI team-a
		onPort            // plain HTTP to the --port route of team-a
		onPortTLSB        // TLS to that port, SNI team-b
	)
	for _, tc := range []struct {
		name  string
		at    int
		raw   string
		want  []int // one status per response read
		reach bool  // must reach Nexus (else must not)
		has   string
		lacks string // substrings of the first body
	}{
		// Context path: only [ctx]/repository/<team-a's>/v1|v2 is mapped.
		{name: "own prefix with context path", raw: get("{CTX}/repository/team-a/v2/"), want: []int{200}, reach: true},
		{name: "own prefix, other context path", raw: get("/other{CTX}/repository/team-a/v2/"), want: []int{404}},
		{name: "other team under context path", raw: get("{CTX}/repository/team-b/v2/"), want: []int{404}},
		{name: "REST under context path", raw: get("{CTX}/service/rest/v1/status"), want: []int{404}},
		{name: "dots out of context path", raw: get("{CTX}/../repository/team-b/v2/"), want: []int{400}},
		{name: "encoded slash after context", raw: get("/x%2frepository/team-b/v2/"), want: []int{400}},
		{name: "upper-case repository segment", raw: get("{CTX}/REPOSITORY/team-a/v2/"), want: []int{404}},
		{name: "encoded repository name", raw: get("{CTX}/repository/team-a%2dhosted/v2/"), want: []int{404}},
		{name: "encoded v2 after own prefix", raw: get("{CTX}/repository/team-a/v%32/"), want: []int{404}},
		{name: "encoded v2", raw: get("/%76%32/app/tags/list"), want: []int{404}},
		// Token paths: one name's realm, never another team's.
		{name: "token", raw: get("/v2/token?service=x&scope=repository:secret/app:pull"), want: []int{200}, reach: true},
		{name: "doubled token path naming team-b", raw: get("{CTX}/repository/team-a/repository/team-b/v2/token"), want: []int{404}},
		{name: "team-b's token path below /v2/", raw: get("/v2/repository/team-b/v2/token"), want: []int{404}, reach: true},
		// What team-a lists and reads is team-a's.
		{name: "catalog lists team-a only", raw: get("/v2/_catalog"), want: []int{200}, reach: true, has: `"app"`, lacks: "secret"},
		{name: "catalog paging with a path", raw: get("/v2/_catalog?n=10&last=../../team-b"), want: []int{200}, reach: true, lacks: "secret"},
		{name: "team-b's image by name", raw: get("/v2/secret/app/manifests/1"), want: []int{404}, reach: true},
		{name: "v1 ping", raw: get("/v1/_ping"), want: []int{200}, reach: true},
		{name: "v1 search", raw: get("/v1/search?q=secret"), want: []int{200}, reach: true, lacks: "secret/app"},
		{name: "v1 dots", raw: get("/v1/../service/rest/v1/status"), want: []int{400}},
		{name: "v1 encoded dots", raw: get("/v1/%2e%2e/service"), want: []int{400}},
		// Paths in the query go to Nexus as a query, under team-a.
		{name: "query holding dots", raw: get("/v2/app/tags/list?last=../../../service/rest/v1/status"), want: []int{200}, reach: true},
		{name: "query holding another repository", raw: get("/v2/?x=/repository/team-b/v2/"), want: []int{200}, reach: true},
		// Spellings: refused, or kept encoded under team-a.
		{name: "Jetty 9 %u dots", raw: get("/v2/%u002e%u002e/service/rest/v1/status"), want: []int{400}},
		{name: "3-byte overlong dots", raw: get("/v2/%e0%80%ae%e0%80%ae/service"), want: []int{400}},
		{name: "overlong slashes around dots", raw: get("/v2/%c0%af..%c0%afservice"), want: []int{400}},
		{name: "encoded single dot", raw: get("/v2/%2e/service"), want: []int{400}},
		{name: "encoded v2 slash then dots", raw: get("/v2%2f../service"), want: []int{400}},
		{name: "encoded '#' stays encoded", raw: get("/v2/app%23/tags/list"), want: []int{404}, reach: true},
		{name: "encoded '?' stays encoded", raw: get("/v2/app%3f/tags/list"), want: []int{404}, reach: true},
		// Request lines and Host values.
		{name: "TRACE", raw: "TRACE /v2/ HTTP/1.1\r\nHost: {A}\r\n\r\n", want: []int{405}},
		{name: "WebDAV method", raw: "PROPFIND /v2/ HTTP/1.1\r\nHost: {A}\r\n\r\n", want: []int{405}},
		{name: "GET *", raw: get("*"), want: []int{400}},
		{name: "HTTP/2.0 on a request line", raw: "GET /v2/ HTTP/2.0\r\nHost: {A}\r\n\r\n", want: []int{505}},
		{name: "unknown protocol", raw: "GET /v2/ FOO/1.1\r\nHost: {A}\r\n\r\n", want: []int{400}},
		{name: "Host list of both teams", raw: getAt("{A}, {B}", "/v2/"), want: []int{400}},
		{name: "same Host twice", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\nHost: {A}\r\n\r\n", want: []int{400}},
		{name: "Host with trailing dot", raw: getAt("team-a.nexmux.test.", "/v2/"), want: []int{200}, reach: true},
		{name: "absolute-form naming team-b", raw: "GET http://{B}/v2/ HTTP/1.1\r\nHost: {A}\r\n\r\n", want: []int{400}},
		{name: "keep-alive turning to team-b", raw: get("/v2/") + getAt("{B}", "/v2/"), want: []int{200, 421}, reach: true},
		{name: "keep-alive turning to Nexus", raw: get("/v2/") + getAt("{NX}", "{CTX}/service/rest/v1/status"), want: []int{200, 421}, reach: true},
		// A --port route serves its own repositories whatever the Host or
		// SNI names; paths are judged as on a name.
		{name: "port route", at: onPort, raw: getAt("{P}", "/v2/"), want: []int{200}, reach: true},
		{name: "port route, Host team-b", at: onPort, raw: getAt("{B}", "/v2/"), want: []int{200}, reach: true},
		{name: "port route, Host Nexus", at: onPort, raw: getAt("{NX}", "/v2/"), want: []int{200}, reach: true},
		{name: "port route, TLS for team-b", at: onPortTLSB, raw: getAt("{B}", "/v2/_catalog"), want: []int{200}, reach: true, lacks: "secret"},
		{name: "port route, other team", at: onPort, raw: getAt("{P}", "{CTX}/repository/team-b/v2/"), want: []int{404}},
		{name: "port route, TLS for team-b, other team", at: onPortTLSB, raw: getAt("{B}", "{CTX}/repository/team-b/v2/"), want: []int{404}},
		{name: "port route, dots", at: onPort, raw: getAt("{P}", "/v2/../service/rest/v1/status"), want: []int{400}},
		{name: "port route, absolute-form to Nexus", at: onPort, raw: "GET http://{NX}{CTX}/service/rest/v1/status HTTP/1.1\r\nHost: {NX}\r\n\r\n", want: []int{400}},
		{name: "port route, REST", at: onPort, raw: getAt("{NX}", "{CTX}/service/rest/v1/status"), want: []int{404}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.Nexus.ResetRequests()
			raw := []byte(repl.Replace(tc.raw))
			var res rawResult
			switch tc.at {
			case onName:
				res = rawExchange(st, "team-a.nexmux.test", raw, len(tc.want), http.MethodGet)
			case onPort:
				res = rawExchangeAt(portAddr, nil, raw, len(tc.want), http.MethodGet)
			case onPortTLSB:
				res = rawExchangeAt(portAddr, &tls.Config{ServerName: "team-b.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}}, raw, len(tc.want), http.MethodGet)
			}
			if res.err != nil {
				t.Fatalf("%v (statuses so far %v)", res.err, res.statuses)
			}
			for i, code := range res.statuses {
				if code != tc.want[i] {
					t.Errorf("response %d: %d %q, want %d", i+1, code, res.bodies[i], tc.want[i])
				}
				if code >= 400 {
					if why := notRegistryError(res.types[i], res.bodies[i]); why != "" {
						t.Errorf("response %d: %d is no registry error: %s", i+1, code, why)
					}
				}
			}
			if !strings.Contains(res.bodies[0], tc.has) || tc.lacks != "" && strings.Contains(res.bodies[0], tc.lacks) {
				t.Errorf("body %q: want it to hold %q and not %q", res.bodies[0], tc.has, tc.lacks)
			}
			log := st.Nexus.Requests()
			for _, r := range log {
				if !allowedUpstreamUnder(r, ctxPath) {
					t.Errorf("reached Nexus outside team-a's registry API: %s %s (path %q, repo %q)", r.Method, r.RawPath, r.Path, r.Repo)
				}
				if h, _, _ := strings.Cut(r.Host, ":"); tc.at == onName && strings.TrimSuffix(h, ".") != "team-a.nexmux.test" {
					t.Errorf("reached Nexus with Host %q", r.Host)
				}
			}
			if tc.reach != (len(log) > 0) {
				t.Errorf("%d request(s) reached Nexus, want them to reach it: %v", len(log), tc.reach)
			}
		})
	}
}

// notRegistryError says what keeps a body from being a Docker registry error
// ("" when it is one).
func notRegistryError(contentType, body string) string {
	if !strings.HasPrefix(contentType, "application/json") {
		return fmt.Sprintf("Content-Type %q", contentType)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return fmt.Sprintf("body %q: %v", body, err)
	}
	if len(e.Errors) == 0 || e.Errors[0].Code == "" {
		return fmt.Sprintf("body %q holds no error code", body)
	}
	return ""
}
