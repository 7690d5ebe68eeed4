package daemon_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// confinedRoutes is the layout of the confinement tests: team-a has one
// name for pull (group) and push (hosted); team-b reads its group.
func confinedRoutes() config.Config {
	return config.Config{Route: []string{
		"team-a.nexmux.test=pull:team-a,push:team-a-hosted",
		"team-b.nexmux.test=team-b",
	}}
}

// rawResult is what came back for one raw request.
type rawResult struct {
	statuses []int
	bodies   []string
	types    []string // Content-Type of each response
	err      error    // set when fewer responses than expected were read
}

// rawExchange opens a fresh TLS connection (HTTP/1.1 only, so the bytes
// below are exactly what nexmux parses), writes raw as it is, and reads
// up to n responses with http.ReadResponse. Writing happens in its own
// goroutine: for oversized requests the server answers (431) before it
// has read everything, and the answer must be read while the rest is
// still being written.
func rawExchange(st *stack.Stack, serverName string, raw []byte, n int, method string) rawResult {
	return rawExchangeAt(st.Addr, &tls.Config{
		ServerName: serverName,
		RootCAs:    st.Pool(),
		NextProtos: []string{"http/1.1"},
	}, raw, n, method)
}

// rawExchangeAt is rawExchange to addr, over TLS with cfg or, when cfg is
// nil, in plain TCP (a --port route takes plain HTTP too).
func rawExchangeAt(addr string, cfg *tls.Config, raw []byte, n int, method string) rawResult {
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return rawResult{err: fmt.Errorf("dial: %w", err)}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(raw)
		wrote <- err
	}()
	var res rawResult
	br := bufio.NewReader(c)
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("no answer within the read deadline (hang): %w", err)
			}
			res.err = fmt.Errorf("response %d: %w", i+1, err)
			break
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		res.statuses = append(res.statuses, resp.StatusCode)
		res.bodies = append(res.bodies, string(body))
		res.types = append(res.types, resp.Header.Get("Content-Type"))
	}
	c.Close()
	<-wrote
	return res
}

// upstreamReach says whether a case's request may arrive at Nexus.
type upstreamReach int

const (
	reachNever upstreamReach = iota // nexmux itself must refuse it
	reachMust                       // benign: it must arrive (inside team-a's repositories)
	reachMay                        // confined by forwarding (e.g. ";" inside a path segment)
)

type hostileCase struct {
	name string
	// raw is the request; "{A}" is replaced by team-a's Host value,
	// "{B}" by team-b's, "{AUTH}" by a Basic Authorization header value.
	raw string
	sni string // default team-a
	// want is the exact status when set; otherwise any 4xx (benign cases
	// must set it).
	want   int
	want2  int // the second response's status, when n is 2
	reach  upstreamReach
	n      int    // responses to read (pipelining); default 1
	method string // for reading the response; default GET
}

func hostileCases() []hostileCase {
	get := func(target string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: {A}\r\nAuthorization: {AUTH}\r\n\r\n"
	}
	long := strings.Repeat("a", 70<<10)
	return []hostileCase{
		// Benign: these must reach Nexus, so the log assertion cannot
		// pass vacuously.
		{name: "benign /v2/", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 401, reach: reachMust},
		{name: "benign /v2/ with auth", raw: get("/v2/"), want: 200, reach: reachMust},
		{name: "benign tags of unknown image", raw: get("/v2/app/tags/list"), want: 404, reach: reachMust},
		{name: "benign blob HEAD goes to hosted", raw: "HEAD /v2/app/blobs/sha256:" + strings.Repeat("0", 64) + " HTTP/1.1\r\nHost: {A}\r\nAuthorization: {AUTH}\r\n\r\n", want: 404, reach: reachMust, method: http.MethodHead},
		{name: "benign explicit own repository prefix", raw: get("/repository/team-a-hosted/v2/"), want: 200, reach: reachMust},
		{name: "benign mixed-case Host", raw: "GET /v2/ HTTP/1.1\r\nHost: {AUPPER}\r\nAuthorization: {AUTH}\r\n\r\n", want: 200, reach: reachMust},
		{name: "encoded slash in image name", raw: get("/v2/a%2Fb/tags/list"), want: 400},
		{name: "encoded slash hiding an upload session", raw: get("/v2/x/blobs/uploads%2fabc"), want: 400},

		// Dot segments, raw and encoded.
		{name: "dot segments", raw: get("/v2/../service/rest/v1/status"), want: 400},
		{name: "dot segments to other repository", raw: get("/v2/../../team-b/v2/"), want: 400},
		{name: "dot segments inside repository prefix", raw: get("/repository/team-a/../team-b/v2/"), want: 400},
		{name: "dot segments after own prefix", raw: get("/repository/team-a/v2/../../team-b/v2/"), want: 400},
		{name: "single dot segment", raw: get("/v2/./../service/rest/v1/status"), want: 400},
		{name: "encoded dots and slash", raw: get("/v2/%2e%2e%2fservice/rest/v1/status"), want: 400},
		{name: "upper-case encoded dots", raw: get("/v2/%2E%2E/service/rest/v1/status"), want: 400},
		{name: "half-encoded dots", raw: get("/v2/.%2e/service/rest/v1/status"), want: 400},
		{name: "double-encoded dots", raw: get("/v2/%252e%252e/service/rest/v1/status"), want: 400},
		{name: "double-encoded dots and slash", raw: get("/v2/%252e%252e%252fservice%252frest"), want: 400},
		{name: "triple-encoded dots", raw: get("/v2/%25252e%25252e/service"), want: 400},
		{name: "dots before encoded slash", raw: get("/v2/..%2fservice/rest/v1/status"), want: 400},
		{name: "encoded repository walk", raw: get("/repository/team-a%2f..%2fteam-b/v2/"), want: 400},
		{name: "Jetty path parameter ..;/", raw: get("/v2/..;/service/rest/v1/status"), want: 400},
		{name: "path parameter on v2 then dots", raw: get("/v2;x=y/../service/rest/v1/status"), want: 400},
		{name: "overlong UTF-8 dots", raw: get("/v2/%c0%ae%c0%ae/service/rest/v1/status"), want: 400},
		{name: "many dot segments (very long path)", raw: get("/v2/" + strings.Repeat("../", 4000) + "service/rest/v1/status"), want: 400},

		// Backslashes.
		{name: "backslash", raw: get(`/v2/..\service\rest\v1\status`), want: 400},
		{name: "encoded backslash", raw: get("/v2/..%5cservice%5crest"), want: 400},
		{name: "encoded backslash upper-case", raw: get("/v2/%2e%2e%5Cservice"), want: 400},

		// Control bytes.
		{name: "NUL byte in path", raw: "GET /v2/\x00/../service HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 400},
		{name: "encoded NUL", raw: get("/v2/app%00/../../service/rest/v1/status"), want: 400},
		{name: "tab in path", raw: "GET /v2/a\tb/tags/list HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 400},
		{name: "encoded CR LF in path", raw: get("/v2/x%0d%0aHost:%20evil/tags/list"), want: 400},

		// Request-target forms other than origin-form.
		{name: "absolute-form to Nexus admin API", raw: "GET http://127.0.0.1:8081/service/rest/v1/status HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 400},
		{name: "absolute-form to own name", raw: "GET https://{A}/v2/ HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 400},
		// Its host is r.Host, which no Host header check has seen.
		{name: "absolute-form with a host no Host header may hold", raw: "GET http://a\"b/v2/ HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 400},
		{name: "CONNECT", raw: "CONNECT 127.0.0.1:8081 HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n", want: 400},
		{name: "OPTIONS *", raw: "OPTIONS * HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 400},
		{name: "target without leading slash", raw: "GET v2/ HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 400},

		// Not the registry API, or not this route's repositories.
		{name: "other team's group", raw: get("/repository/team-b/v2/secret/app/manifests/1"), want: 404},
		{name: "other team's hosted", raw: get("/repository/team-b-hosted/v2/secret/app/manifests/1"), want: 404},
		{name: "other team's hosted upload", raw: "POST /repository/team-b-hosted/v2/x/blobs/uploads/ HTTP/1.1\r\nHost: {A}\r\nAuthorization: {AUTH}\r\nContent-Length: 0\r\n\r\n", want: 404},
		{name: "other team, other case", raw: get("/repository/TEAM-B/v2/"), want: 404},
		{name: "own repository outside the API", raw: get("/repository/team-a/service/rest/v1/status"), want: 404},
		{name: "REST API", raw: get("/service/rest/v1/status"), want: 404},
		{name: "REST API settings", raw: get("/service/rest/v1/repositorySettings"), want: 404},
		{name: "context-path REST API", raw: get("/nexus/service/rest/v1/status"), want: 404},
		{name: "double slash to REST", raw: get("//service/rest/v1/status"), want: 404},
		// Nexus's repository servlet describes the request (headers
		// included) instead of serving it: not the registry API.
		{name: "Nexus describe parameter", raw: get("/v2/app/tags/list?describe=json"), want: 400},
		{name: "Nexus describe parameter, encoded name", raw: get("/repository/team-a/v2/?n=1&%64escribe"), want: 400},
		{name: "UI root", raw: get("/"), want: 404},

		// Host header games.
		{name: "Host spoofing other team", raw: "GET /v2/ HTTP/1.1\r\nHost: {B}\r\n\r\n", want: 421},
		{name: "Host spoofing other team, upper-case", raw: "GET /v2/ HTTP/1.1\r\nHost: TEAM-B.NEXMUX.TEST\r\n\r\n", want: 421},
		{name: "Host naming Nexus", raw: "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n", want: 421},
		{name: "empty Host", raw: "GET /v2/ HTTP/1.1\r\nHost:\r\n\r\n", want: 400},
		{name: "missing Host", raw: "GET /v2/ HTTP/1.1\r\n\r\n", want: 400},
		{name: "SNI team-b, Host team-a", sni: "team-b.nexmux.test", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 421},
		{name: "SNI team-b, Host team-a, team-a path", sni: "team-b.nexmux.test", raw: get("/repository/team-a-hosted/v2/"), want: 421},
		{name: "duplicated Host", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\nHost: {B}\r\n\r\n", want: 400},
		{name: "Unicode look-alike Host (Cyrillic e)", raw: "GET /v2/ HTTP/1.1\r\nHost: t\u0435am-a.nexmux.test\r\n\r\n", want: 400},
		{name: "Host with userinfo", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}@127.0.0.1:8081\r\n\r\n"},
		{name: "Host with NUL", raw: "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\x00.evil\r\n\r\n", want: 400},

		// Header injection and framing.
		{name: "bare LF smuggles a second Host", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\nX-A: 1\nHost: {B}\r\n\r\n", want: 400},
		{name: "CR in header value", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\nX-A: 1\rHost: {B}\r\n\r\n", want: 400},
		{name: "NUL in header value", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\nX-A: 1\x00\r\n\r\n", want: 400},
		{name: "space before colon", raw: "GET /v2/ HTTP/1.1\r\nHost : {B}\r\nHost: {A}\r\n\r\n", want: 400},
		// net/http folds the line into X-A's value: harmless, Host stays team-a.
		{name: "obs-fold continuation", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\nX-A: 1\r\n Host: {B}\r\n\r\n", want: 401, reach: reachMay},
		// Chunked wins over Content-Length (RFC 9112 6.3) and the
		// connection closes after the answer: the smuggled request is never
		// served (mux.TestAmbiguousFramingClosesTheConnection); Nexus only
		// ever sees nexmux's own framing.
		{name: "Content-Length and chunked smuggling", raw: "POST /v2/ HTTP/1.1\r\nHost: {A}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /service/rest/v1/status HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 401, reach: reachMay},
		{name: "two Content-Lengths", raw: "POST /v2/ HTTP/1.1\r\nHost: {A}\r\nContent-Length: 0\r\nContent-Length: 48\r\n\r\nGET /service/rest/v1/status HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 400},
		{name: "pipelined request after a benign one", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\n\r\nGET /service/rest/v1/status HTTP/1.1\r\nHost: {A}\r\n\r\n", n: 2, want: 401, want2: 404, reach: reachMay},
		{name: "HTTP/1.0 without Host", raw: "GET /v2/ HTTP/1.0\r\n\r\n", want: 400},
		// A client waiting for "100 Continue" before its body must get
		// nexmux's refusal at once, not wait for a 100 that never comes.
		{name: "Expect 100-continue outside the registry API", raw: "POST /service/rest/v1/script HTTP/1.1\r\nHost: {A}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", want: 404},
		{name: "Expect 100-continue with another team's Host", raw: "PUT /v2/app/manifests/1 HTTP/1.1\r\nHost: {B}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", want: 421},
		{name: "Expect 100-continue with dot segments", raw: "PATCH /v2/../x HTTP/1.1\r\nHost: {A}\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n", want: 400},
		{name: "HTTP/0.9-style request line", raw: "GET /service/rest/v1/status\r\n\r\n", want: 400},

		// Size limits (MaxHeaderBytes 64 KiB).
		{name: "overlong request line", raw: "GET /v2/" + long + " HTTP/1.1\r\nHost: {A}\r\n\r\n", want: 431},
		{name: "overlong header", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\nX-Long: " + long + "\r\n\r\n", want: 431},
		{name: "many headers", raw: "GET /v2/ HTTP/1.1\r\nHost: {A}\r\n" + strings.Repeat("X-Many: 0123456789abcdef0123456789abcdef\r\n", 2000) + "\r\n", want: 431},
		{name: "very long path under the limit", raw: get("/v2/" + strings.Repeat("abcdefgh/", 5000) + "tags/list"), reach: reachMay},
	}
}

// allowedUpstream reports whether a request the fixture logged stayed in
// team-a's repositories and Registry API.
func allowedUpstream(r fixtures.Request) bool { return allowedUpstreamUnder(r, "") }

// allowedUpstreamUnder is allowedUpstream for a Nexus whose context path
// is ctxPath.
func allowedUpstreamUnder(r fixtures.Request, ctxPath string) bool {
	if r.Repo != "team-a" && r.Repo != "team-a-hosted" {
		return false
	}
	for _, p := range []string{r.Path, r.RawPath} {
		ok := false
		for _, api := range []string{"/v1", "/v2"} {
			prefix := ctxPath + "/repository/" + r.Repo + api
			if p == prefix || strings.HasPrefix(p, prefix+"/") {
				ok = true
			}
		}
		if !ok {
			return false
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == ".." || seg == "." {
				return false
			}
		}
	}
	return true
}

func TestConfinementTable(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	hostA, hostB := st.Host("team-a"), st.Host("team-b")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	repl := strings.NewReplacer("{A}", hostA, "{B}", hostB, "{AUPPER}", strings.ToUpper(hostA), "{AUTH}", auth)

	cases := hostileCases()
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	var reached, refused int
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sni := tc.sni
			if sni == "" {
				sni = "team-a.nexmux.test"
			}
			n, method := max(tc.n, 1), tc.method
			if method == "" {
				method = http.MethodGet
			}
			st.Nexus.ResetRequests()
			res := rawExchange(st, sni, []byte(repl.Replace(tc.raw)), n, method)
			if res.err != nil {
				t.Fatalf("%v (statuses so far %v)", res.err, res.statuses)
			}
			for i, code := range res.statuses {
				switch {
				case code >= 500:
					t.Errorf("response %d: %d %q: a 5xx", i+1, code, res.bodies[i])
				case tc.want != 0 && i == 0 && code != tc.want:
					t.Errorf("got %d %q, want %d", code, res.bodies[i], tc.want)
				case tc.want2 != 0 && i == 1 && code != tc.want2:
					t.Errorf("second response %d %q, want %d", code, res.bodies[i], tc.want2)
				case tc.reach != reachMust && (code < 400 || code >= 500):
					t.Errorf("response %d: %d %q, want a 4xx", i+1, code, res.bodies[i])
				}
			}
			log := st.Nexus.Requests()
			for _, r := range log {
				if !allowedUpstream(r) {
					t.Errorf("reached Nexus outside team-a's registry API: %s %s (path %q, repo %q, host %q) -> %d", r.Method, r.RawPath, r.Path, r.Repo, r.Host, r.Status)
				}
				if !strings.EqualFold(r.Host, hostA) {
					t.Errorf("reached Nexus with Host %q", r.Host)
				}
				for _, k := range []string{"X-Forwarded-Host", "Forwarded"} {
					if v := r.Header.Values(k); len(v) > 0 {
						t.Errorf("%s reached Nexus: %q", k, v)
					}
				}
			}
			switch tc.reach {
			case reachNever:
				if len(log) != 0 {
					t.Errorf("nexmux forwarded %d request(s) it should have refused: first %s %s", len(log), log[0].Method, log[0].RawPath)
				}
				refused++
			case reachMust:
				if len(log) == 0 {
					t.Errorf("benign request never reached Nexus")
				}
				reached++
			}
			t.Logf("%v, %d upstream request(s)", res.statuses, len(log))
		})
	}
	if reached == 0 || refused < 40 {
		t.Fatalf("table ran %d benign and %d refused cases", reached, refused)
	}
}

// TestConfinementLookAlikeServerNames covers the names a connection is
// opened for: a Unicode look-alike or unknown name never gets a route.
func TestConfinementLookAlikeServerNames(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	for _, sni := range []string{
		"t\u0435am-a.nexmux.test", // Cyrillic е
		"team-a.nexmux.test.evil",
		"xn--tam-a-2nf.nexmux.test",
		"team-a-hosted.nexmux.test",
		"team-a.nexmux.test\x00",
	} {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", st.Addr, &tls.Config{ServerName: sni, RootCAs: st.Pool(), InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			t.Errorf("SNI %q: handshake succeeded", sni)
			continue
		}
		// The refusal comes from nexmux (an alert), not from the client.
		if !strings.Contains(err.Error(), "remote error") {
			t.Errorf("SNI %q: %v, want a TLS alert from nexmux", sni, err)
		}
	}
	if n := len(st.Nexus.Requests()); n != 0 {
		t.Errorf("%d requests reached Nexus", n)
	}
}
