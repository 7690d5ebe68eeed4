package discover_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/discover"
	"github.com/nexmux/nexmux/route"
)

func nexus(t *testing.T, ctxPath string) string {
	t.Helper()
	nx, err := fixtures.New(fixtures.Config{
		ContextPath: ctxPath,
		Users:       map[string]string{"admin": "admin123"},
		DataDir:     t.TempDir(),
		Repos: []fixtures.Repo{
			{Name: "team-a-hosted", Type: fixtures.Hosted, Online: true, HTTPPort: 8083},
			{Name: "team-a-proxy", Type: fixtures.Proxy, Online: true},
			{Name: "team-a", Type: fixtures.Group, Online: true, Members: []string{"team-a-hosted", "team-a-proxy"}, HTTPPort: 8082, HTTPSPort: 8442},
			{Name: "shared", Type: fixtures.Group, Online: true, Members: []string{"team-a-proxy"}, HTTPSPort: 8090},
		},
		NonDocker: []fixtures.NonDocker{{Name: "maven-central", Format: "maven2", Type: "proxy"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(nx)
	t.Cleanup(func() { hs.Close(); nx.Close() })
	return hs.URL + ctxPath
}

func TestDiscoverAgainstFixture(t *testing.T) {
	for _, ctxPath := range []string{"", "/nexus"} {
		base := nexus(t, ctxPath)
		repos, err := discover.Fetch(context.Background(), nil, base, "admin", "admin123")
		if err != nil {
			t.Fatal(err)
		}
		plan, err := discover.MakePlan(repos, "registry.example.com")
		if err != nil {
			t.Fatal(err)
		}
		wantRoutes := []string{
			"shared.registry.example.com=shared",
			"team-a.registry.example.com=pull:team-a,push:team-a-hosted",
			"team-a-hosted.registry.example.com=team-a-hosted",
			"team-a-proxy.registry.example.com=team-a-proxy",
		}
		wantPorts := []string{"8090=shared", "8082=pull:team-a,push:team-a-hosted", "8442=pull:team-a,push:team-a-hosted", "8083=team-a-hosted"}
		if strings.Join(plan.Routes, " ") != strings.Join(wantRoutes, " ") {
			t.Errorf("routes %q, want %q", plan.Routes, wantRoutes)
		}
		if strings.Join(plan.Ports, " ") != strings.Join(wantPorts, " ") {
			t.Errorf("ports %q, want %q", plan.Ports, wantPorts)
		}
		if len(plan.Connectors) != 4 || len(plan.Skipped) != 1 || !strings.Contains(plan.Skipped[0], "maven2") {
			t.Errorf("connectors %v skipped %v", plan.Connectors, plan.Skipped)
		}

		// The YAML is a valid --config file that builds a valid table.
		plan.Upstream = "http://nexus:8081/nexus"
		var f struct {
			Upstream []string `yaml:"upstream"`
			Route    []string `yaml:"route"`
			Port     []string `yaml:"port"`
		}
		y := plan.YAML()
		if err := yaml.Unmarshal([]byte(y), &f); err != nil {
			t.Fatalf("yaml: %v\n%s", err, y)
		}
		if len(f.Upstream) != 1 || f.Upstream[0] != plan.Upstream {
			t.Errorf("yaml upstream %q, want the Nexus it was read from", f.Upstream)
		}
		cfg := config.Config{Listen: ":8443", Port: f.Port}
		if _, tab, err := cfg.PortRoutes(); err != nil || len(tab.Ports()) != 4 {
			t.Errorf("discovered ports do not build: %v", err)
		}
		if !strings.Contains(y, "nexmux iptables --listen :8443") || !strings.Contains(y, "team-a: http port 8082") {
			t.Errorf("yaml lacks the cut-over notes:\n%s", y)
		}
		if fl := plan.Flags(); !strings.Contains(fl, "--route 'team-a.registry.example.com=pull:team-a,push:team-a-hosted'") || !strings.Contains(fl, "--upstream 'http://nexus:8081/nexus'") {
			t.Errorf("flags:\n%s", fl)
		}
	}
}

func TestDiscoverErrors(t *testing.T) {
	base := nexus(t, "")
	if _, err := discover.Fetch(context.Background(), nil, base, "admin", "wrong"); !errors.Is(err, discover.ErrUnauthorized) {
		t.Errorf("bad credentials: %v", err)
	}
	if _, err := discover.Fetch(context.Background(), nil, "http://127.0.0.1:1", "admin", "admin123"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unreachable: %v", err)
	}
	if _, err := discover.Fetch(context.Background(), nil, base+"/wrong-context", "admin", "admin123"); err == nil || !strings.Contains(err.Error(), "context path") {
		t.Errorf("wrong context path: %v", err)
	}
	// What serve refuses as --upstream is refused here: the URL is printed
	// as upstream, and a password in it would be printed too.
	withPassword := strings.Replace(base, "://", "://admin:admin123@", 1)
	for _, bad := range []string{withPassword, base + "?x=1", base + "/#frag", base + "/nexus/../service"} {
		_, err := discover.Fetch(context.Background(), nil, bad, "admin", "admin123")
		if err == nil || !strings.Contains(err.Error(), "nexus URL") || strings.Contains(err.Error(), "admin123") {
			t.Errorf("Fetch(%q): %v, want the URL refused without its password", bad, err)
		}
	}
	if _, err := discover.MakePlan([]discover.Repo{{Name: "maven-central", Format: "maven2"}}, ""); !errors.Is(err, discover.ErrNoDocker) {
		t.Errorf("no docker repositories: %v", err)
	}
}

// TestDiscoverOutputKeepsNexusTextInComments: names, formats and remote URLs
// come from whatever answered the REST call; a line break in one (\n, or
// NEL/LS, which YAML also ends a comment at) must not put a line of its own
// into the printed configuration.
func TestDiscoverOutputKeepsNexusTextInComments(t *testing.T) {
	var repos []discover.Repo
	body := `[
	 {"name":"m\ndefault-route: \"a\"","format":"maven2\n--default-route 'a'"},
	 {"name":"n\u0085strip-header: [\"x\"]","format":"npm\u2028mirror-auth-file: /etc/shadow"},
	 {"name":"hub","format":"docker","type":"proxy","proxy":{"remoteUrl":"https://ghcr.io/x\u2028passthrough: [\"a.example.com=evil:443\"]"}},
	 {"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082}}]`
	if err := json.Unmarshal([]byte(body), &repos); err != nil {
		t.Fatal(err)
	}
	plan, err := discover.MakePlan(repos, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	y := plan.YAML()
	var keys map[string]any
	if err := yaml.Unmarshal([]byte(y), &keys); err != nil {
		t.Fatalf("yaml: %v\n%s", err, y)
	}
	for k := range keys {
		if k != "route" && k != "port" && k != "mirror" {
			t.Errorf("yaml has key %q from Nexus's text:\n%s", k, y)
		}
	}
	for _, line := range strings.FieldsFunc(plan.Flags(), func(r rune) bool { return r == '\n' || r == '\r' || r == '\u0085' || r == '\u2028' || r == '\u2029' }) {
		if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "--") {
			t.Errorf("flags output has a line that is neither a comment nor a flag: %q", line)
		}
		if strings.HasPrefix(line, "--default-route") {
			t.Errorf("flags output has a flag from Nexus's text: %q", line)
		}
	}
}

// TestDiscoverRefusesUnusablePorts: a connector port serve cannot take (out
// of range, or claimed twice) is an error naming the repository, not a
// --port line and an iptables command that fail later.
func TestDiscoverRefusesUnusablePorts(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":70000}}]`, `"a": http port 70000`},
		{`[{"name":"a","format":"docker","type":"hosted","docker":{"httpsPort":-1}}]`, `"a": https port -1`},
		{`[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":0}}]`, `"a": http port 0`},
		{`[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082}},{"name":"b","format":"docker","type":"hosted","docker":{"httpsPort":8082}}]`, `"b": https port 8082 is also the http port of a`},
		{`[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082,"httpsPort":8082}}]`, `"a": https port 8082 is also the http port of a`},
	} {
		var repos []discover.Repo
		if err := json.Unmarshal([]byte(tc.body), &repos); err != nil {
			t.Fatal(err)
		}
		p, err := discover.MakePlan(repos, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			var ports []string
			if p != nil {
				ports = p.Ports
			}
			t.Errorf("%s: %v (ports %q), want an error with %q", tc.body, err, ports, tc.want)
		}
	}
}

// TestDiscoverErrorsCarryNoControlCharacters: the body of an error answer
// is printed on the operator's terminal; escape sequences in it (a hostile
// Nexus or a man in the middle) must arrive as text.
func TestDiscoverErrorsCarryNoControlCharacters(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "\x1b]0;owned\x07\x1b[2J\r\x9b31mbad gateway\n")
	}))
	defer hs.Close()
	_, err := discover.Fetch(context.Background(), nil, hs.URL, "admin", "admin123")
	if err == nil {
		t.Fatal("no error for a 502")
	}
	for _, r := range err.Error() {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == utf8.RuneError {
			t.Fatalf("error carries control character %U: %q", r, err)
		}
	}
	if !strings.Contains(err.Error(), "bad gateway") {
		t.Errorf("error lost the body: %v", err)
	}
}

// TestDiscoverNameThatIsNoHostLabel: Nexus allows repository names that
// make no DNS label (a trailing '-', "..", more than 63 characters). Such a
// repository gets no host name, with a note, and keeps its ports; the rest
// of the mapping is still printed.
func TestDiscoverNameThatIsNoHostLabel(t *testing.T) {
	long := strings.Repeat("a", 64)
	var repos []discover.Repo
	body := `[{"name":"team-","format":"docker","type":"hosted","docker":{"httpPort":8082}},
	 {"name":"a..b","format":"docker","type":"hosted"},
	 {"name":"` + long + `","format":"docker","type":"hosted"},
	 {"name":"ok","format":"docker","type":"hosted","docker":{"httpPort":8083}}]`
	if err := json.Unmarshal([]byte(body), &repos); err != nil {
		t.Fatal(err)
	}
	plan, err := discover.MakePlan(repos, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Routes, " "); got != "ok.example.com=ok" {
		t.Errorf("routes %q", plan.Routes)
	}
	if got := strings.Join(plan.Ports, " "); got != "8083=ok 8082=team-" {
		t.Errorf("ports %q", plan.Ports)
	}
	y := plan.YAML()
	for _, name := range []string{"team-", "a..b", long} {
		if !strings.Contains(y, "# no host name for "+name+": ") {
			t.Errorf("no note for %s:\n%s", name, y)
		}
	}
	cfg := config.Config{Listen: ":8443", Route: plan.Routes, Port: plan.Ports}
	if _, _, err := cfg.PortRoutes(); err != nil {
		t.Errorf("discovered ports do not build: %v", err)
	}
	// A bad --domain is the operator's mistake, not every repository's.
	for _, d := range []string{"*.example.com", "example..com", "example.com:443", "exa mple.com"} {
		if _, err := discover.MakePlan(repos, d); err == nil || !strings.Contains(err.Error(), "domain") {
			t.Errorf("--domain %q: %v, want an error", d, err)
		}
	}
}

// TestDiscoverKeepsSubdomainNames: clients of Nexus Pro's subdomain routing
// pull <subdomain>.<host>/image, and the subdomain is any label, not the
// repository name. With --domain that name is kept (beside <repo>.<domain>)
// and wins over another repository's name; a subdomain that is no single
// label (a hostile "*" would make a wildcard) gets a note, not a route.
func TestDiscoverKeepsSubdomainNames(t *testing.T) {
	plan := planFrom(t, "registry.example.com", []fixtures.Repo{
		{Name: "internal", Type: fixtures.Hosted, Online: true, Subdomain: "docker", HTTPPort: 8083},
		{Name: "docker", Type: fixtures.Hosted, Online: true},
		{Name: "team-a", Type: fixtures.Group, Online: true, Members: []string{"internal"}, Subdomain: "team-a"},
		{Name: "evil", Type: fixtures.Hosted, Online: true, Subdomain: "*"},
		{Name: "evil2", Type: fixtures.Hosted, Online: true, Subdomain: "x.team-a"},
	})
	want := []string{
		"evil.registry.example.com=evil",
		"evil2.registry.example.com=evil2",
		"internal.registry.example.com=internal",
		"docker.registry.example.com=internal",
		"team-a.registry.example.com=pull:team-a,push:internal",
	}
	if strings.Join(plan.Routes, " ") != strings.Join(want, " ") {
		t.Errorf("routes\n %q\nwant %q", plan.Routes, want)
	}
	fl := plan.Flags()
	for _, w := range []string{
		"# no host name for docker: docker.registry.example.com is the subdomain of internal",
		`# no host name for subdomain "*" of evil:`,
		`# no host name for subdomain "x.team-a" of evil2:`,
	} {
		if !strings.Contains(fl, w) {
			t.Errorf("flags lack %q:\n%s", w, fl)
		}
	}
	if _, err := route.Build(route.Spec{Routes: plan.Routes, Ports: plan.Ports}); err != nil {
		t.Errorf("discovered mapping does not build: %v", err)
	}
}

// TestDiscoverNothingToRoute: docker repositories without connector ports,
// read without --domain, give no route at all; that is an error saying
// what to add, not exit 0 with a configuration serve refuses.
func TestDiscoverNothingToRoute(t *testing.T) {
	repos := []discover.Repo{
		{Name: "team-a-hosted", Format: "docker", Type: "hosted"},
		{Name: "team-a", Format: "docker", Type: "group", Group: &struct {
			MemberNames []string `json:"memberNames"`
		}{[]string{"team-a-hosted"}}},
	}
	if _, err := discover.MakePlan(repos, ""); err == nil || !strings.Contains(err.Error(), "--domain") {
		t.Errorf("no ports, no --domain: %v, want an error naming --domain", err)
	}
	if plan, err := discover.MakePlan(repos, "example.com"); err != nil || len(plan.Routes) != 2 {
		t.Errorf("with --domain: %v", err)
	}
}

// A Nexus with docker proxy repositories only (a pull-through mirror for
// Kubernetes nodes) and no connector ports, read without --domain, has
// nothing to print; the error names the proxies a --domain would mirror,
// as discover's output lists them, credentials hidden.
func TestDiscoverNothingToRouteNamesTheProxies(t *testing.T) {
	proxy := func(name, remote string) discover.Repo {
		r := discover.Repo{Name: name, Format: "docker", Type: "proxy"}
		r.Proxy = &struct {
			RemoteURL string `json:"remoteUrl"`
		}{remote}
		return r
	}
	repos := []discover.Repo{proxy("ghcr-proxy", "https://ghcr.io"), proxy("hub-proxy", "https://robot:s3cret@registry-1.docker.io")}
	_, err := discover.MakePlan(repos, "")
	if err == nil {
		t.Fatal("proxies only, no --domain: no error")
	}
	msg := err.Error()
	for _, want := range []string{"--domain", "ghcr-proxy: proxy of ghcr.io", "hub-proxy: proxy of docker.io", "mirror."} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "s3cret") {
		t.Errorf("error shows the remote's password: %s", msg)
	}
	if plan, err := discover.MakePlan(repos, "example.com"); err != nil || len(plan.Mirrors) != 2 {
		t.Errorf("with --domain: %v", err)
	}
}

// An answer over the size cap and one that stalls are refused with what
// stopped them, not as JSON Nexus got wrong.
func TestDiscoverSaysWhichLimitEndedTheAnswer(t *testing.T) {
	defer discover.SetMaxSettings(1 << 10)()
	stall := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/stall/") {
			io.WriteString(w, "[")
			w.(http.Flusher).Flush()
			<-stall
			return
		}
		io.WriteString(w, "["+strings.Repeat(`{"name":"r","format":"docker","type":"hosted"},`, 100)+`{"name":"last","format":"docker","type":"hosted"}]`)
	}))
	defer hs.Close()
	defer close(stall) // before Close, which waits for the stalled handler
	_, err := discover.Fetch(context.Background(), nil, hs.URL, "admin", "admin123")
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("answer over the cap: %v, want it named", err)
	}
	client := &http.Client{Timeout: 300 * time.Millisecond}
	_, err = discover.Fetch(context.Background(), client, hs.URL+"/stall", "admin", "admin123")
	if err == nil || !strings.Contains(err.Error(), "in time") {
		t.Errorf("stalled answer: %v, want a timeout named", err)
	}
}

// An answer whose connection closes before the body its headers announced
// (Nexus restarting, a proxy in front cutting it) is said to be cut short,
// not "not the expected JSON", which points at Nexus's format; a whole
// body that holds a cut list still is the latter.
func TestDiscoverNamesAnAnswerCutShort(t *testing.T) {
	const part = `[{"name":"a","format":"docker","type":"hosted"},{"name":"b"`
	for _, c := range []struct{ answer, want string }{
		{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + part, "cut short"},
		{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n", len(part), part), "cut short"},
		{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(part)) + "\r\n\r\n" + part, "not the expected JSON"},
	} {
		_, err := fetchFromRaw(t, c.answer)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("answer %.90q: %v, want %q", c.answer, err, c.want)
		}
	}
}

// --format flags prints shell words: a quote in the --nexus URL (a context
// path may hold one, and serve accepts it) must stay inside its word, not
// end it and let the rest run as shell.
func TestDiscoverFlagsAreShellWords(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p := &discover.Plan{Upstream: "http://nexus:8081/it's'$(echo x)'", Ports: []string{"8082=r"}}
	out, err := exec.Command(sh, "-c", "printf '%s\\n' "+p.Flags()).Output()
	if err != nil {
		t.Fatalf("sh: %v\n%s", err, p.Flags())
	}
	want := []string{"--upstream", p.Upstream, "--port", "8082=r"}
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); !slices.Equal(got, want) {
		t.Errorf("the shell reads %q, want %q:\n%s", got, want, p.Flags())
	}
}

// A repository Nexus has offline is still routed (it may come back), and
// the output says so, in both formats, so the operator is not surprised by
// its 503s; online ones get no such note.
func TestDiscoverNotesOfflineRepositories(t *testing.T) {
	plan := planFrom(t, "", []fixtures.Repo{
		{Name: "team-a", Type: fixtures.Hosted, Online: true, HTTPPort: 8082},
		{Name: "old-team", Type: fixtures.Hosted, Online: false, HTTPPort: 8099},
	})
	if strings.Join(plan.Ports, " ") != "8099=old-team 8082=team-a" {
		t.Errorf("ports %q: the offline repository must still be routed", plan.Ports)
	}
	for _, out := range []string{plan.Flags(), plan.YAML()} {
		if !strings.Contains(out, "# offline in Nexus: old-team (routed; its requests get 503 until it is online)") || strings.Contains(out, "offline in Nexus: team-a") {
			t.Errorf("offline note missing or wrong:\n%s", out)
		}
	}
}

// planFrom is discover's plan for a fixture Nexus holding repos.
func planFrom(t *testing.T, domain string, repos []fixtures.Repo) *discover.Plan {
	t.Helper()
	nx, err := fixtures.New(fixtures.Config{Users: map[string]string{"admin": "admin123"}, DataDir: t.TempDir(), Repos: repos})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(nx)
	t.Cleanup(func() { hs.Close(); nx.Close() })
	got, err := discover.Fetch(context.Background(), nil, hs.URL, "admin", "admin123")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := discover.MakePlan(got, domain)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// The cut-over notes print the `nexmux iptables` command for the connector
// ports; followed as printed, it must redirect IPv6 clients too (the rules
// are for both families), not only what iptables-restore loads.
func TestCutOverIptablesCommandCoversBothFamilies(t *testing.T) {
	repos, err := discover.Fetch(context.Background(), nil, nexus(t, ""), "admin", "admin123")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := discover.MakePlan(repos, "registry.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"flags": plan.Flags(), "yaml": plan.YAML()} {
		var cmds []string
		for _, l := range strings.Split(out, "\n") {
			if _, c, ok := strings.Cut(l, "nexmux iptables "); ok {
				cmds = append(cmds, c)
			}
		}
		if len(cmds) == 0 {
			t.Fatalf("%s: no nexmux iptables command in the notes:\n%s", name, out)
		}
		all := strings.Join(cmds, "\n")
		for _, p := range []string{"--port '8082=", "--port '8083=", "--port '8090=", "--port '8442="} {
			if !strings.Contains(all, p) {
				t.Errorf("%s: the iptables command lacks %s...:\n%s", name, p, all)
			}
		}
		// --load drives both families unless --families narrows it; piped
		// by hand, ip6tables-restore must get the rules too.
		loads := strings.Contains(all, "--load") && !strings.Contains(all, "--families")
		if !loads && !strings.Contains(all, "ip6tables-restore") {
			t.Errorf("%s: the printed iptables command applies IPv4 only:\n%s", name, all)
		}
	}
}

// An https connector's clients connect with TLS; serve without a --cert
// takes port routes for plain HTTP only, and a --cert for other names
// fails their verification. The printed mapping alone is accepted (check
// says "certificates: none"), so it must say what those ports need.
func TestDiscoverHTTPSConnectorNeedsACertificate(t *testing.T) {
	repos, err := discover.Fetch(context.Background(), nil, nexus(t, ""), "admin", "admin123")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := discover.MakePlan(repos, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"flags": plan.Flags(), "yaml": plan.YAML()} {
		var note string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "# https connector ports ") {
				note = l
			}
		}
		// The fixture's https ports: 8442 (team-a) and 8090 (shared);
		// 8082 and 8083 are http.
		if !strings.Contains(note, "8442 (team-a)") || !strings.Contains(note, "8090 (shared)") || strings.Contains(note, "8082") || strings.Contains(note, "8083") || !strings.Contains(note, "--cert") {
			t.Errorf("%s: the https connector ports' certificate need is not said (note %q):\n%s", name, note, out)
		}
	}
	// Only http connectors: nothing to say.
	var httpOnly []discover.Repo
	for _, r := range repos {
		if r.Docker != nil && r.Docker.HTTPSPort == nil {
			httpOnly = append(httpOnly, r)
		}
	}
	plan, err = discover.MakePlan(httpOnly, "")
	if err != nil {
		t.Fatal(err)
	}
	if y := plan.YAML(); strings.Contains(y, "https connector") {
		t.Errorf("http connectors only, yet a note on https ones:\n%s", y)
	}
}

// A --nexus URL that answers with a redirect is refused, the target named:
// following it would send the credentials on (Go keeps Authorization for
// another port or scheme of the same host, so https can become clear
// text), and the plan would print the redirecting URL as upstream, which
// serve proxies to without following anything.
func TestDiscoverFollowsNoRedirect(t *testing.T) {
	sawPassword := make(chan string, 10)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); ok {
			sawPassword <- pw
		}
		io.WriteString(w, `[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082}}]`)
	}))
	defer target.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A user:password in the Location must not reach the terminal.
			http.Redirect(w, r, strings.Replace(target.URL, "://", "://u:hidden@", 1)+r.URL.Path, code)
		}))
		_, err := discover.Fetch(context.Background(), nil, front.URL, "admin", "admin123")
		front.Close()
		if err == nil || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), strings.TrimPrefix(target.URL, "http://")) {
			t.Errorf("%d: %v, want the redirect and its target named", code, err)
		} else if strings.Contains(err.Error(), "hidden") {
			t.Errorf("%d: the error shows the Location's password: %v", code, err)
		}
		select {
		case pw := <-sawPassword:
			t.Errorf("%d: the redirect target was sent the password %q", code, pw)
		default:
		}
	}
}

// Nexus allows '_' in repository names ("docker_hosted" is common), but a
// host name with one is no name docker can pull by: its reference grammar
// takes letters, digits and '-' only in a registry's labels, and
// certificate authorities issue no certificate for it. Such a repository
// gets no host name, with a note, and keeps its ports; so does a subdomain
// with one.
func TestDiscoverNoHostNameWithUnderscore(t *testing.T) {
	var repos []discover.Repo
	body := `[{"name":"docker_hosted","format":"docker","type":"hosted","docker":{"httpPort":8082}},
	 {"name":"team-b","format":"docker","type":"hosted","docker":{"subdomain":"team_b"}},
	 {"name":"ok","format":"docker","type":"hosted"}]`
	if err := json.Unmarshal([]byte(body), &repos); err != nil {
		t.Fatal(err)
	}
	plan, err := discover.MakePlan(repos, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Routes, " "); got != "ok.example.com=ok team-b.example.com=team-b" {
		t.Errorf("routes %q, want none with '_'", plan.Routes)
	}
	if got := strings.Join(plan.Ports, " "); got != "8082=docker_hosted" {
		t.Errorf("ports %q", plan.Ports)
	}
	y := plan.YAML()
	for _, w := range []string{"# no host name for docker_hosted: ", `# no host name for subdomain "team_b" of team-b: `} {
		if !strings.Contains(y, w) {
			t.Errorf("no note %q:\n%s", w, y)
		}
	}
}

// repositorySettings lists only the repositories the user may read the
// settings of (Nexus's AuthorizingRepositoryManager.getRepositoriesWithAdmin):
// a user without that privilege gets 200 and [] or only other formats.
// "no docker repositories" would then send the operator looking in the
// wrong place; the error names the privilege.
func TestDiscoverNoDockerNamesThePrivilege(t *testing.T) {
	for _, repos := range [][]discover.Repo{nil, {{Name: "maven-central", Format: "maven2"}}} {
		_, err := discover.MakePlan(repos, "example.com")
		if !errors.Is(err, discover.ErrNoDocker) || !strings.Contains(err.Error(), "nx-repository-admin-docker-") {
			t.Errorf("%d repositories, none docker: %v, want the privilege named", len(repos), err)
		}
	}
}

// Every problem of Nexus's answer is listed at once, as for a
// configuration: fixing one only to meet the next costs a round each.
func TestDiscoverListsEveryProblem(t *testing.T) {
	var repos []discover.Repo
	body := `[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":70000}},
	 {"name":"b","format":"docker","type":"hosted","docker":{"httpPort":8082}},
	 {"name":"c","format":"docker","type":"hosted","docker":{"httpsPort":8082}},
	 {"name":"bad name","format":"docker","type":"hosted"}]`
	if err := json.Unmarshal([]byte(body), &repos); err != nil {
		t.Fatal(err)
	}
	_, err := discover.MakePlan(repos, "example.com")
	for _, w := range []string{`"a": http port 70000`, `"c": https port 8082 is also the http port of b`, `"bad name"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}

// A 200 that is no JSON (an SSO login page, a proxy's or a UI's HTML in
// front of Nexus) is named by its Content-Type, not by the JSON parser's
// "invalid character '<'".
func TestDiscoverNamesAnAnswerThatIsNoJSON(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<html><body>Sign in</body></html>")
	}))
	defer hs.Close()
	_, err := discover.Fetch(context.Background(), nil, hs.URL, "admin", "admin123")
	if err == nil || !strings.Contains(err.Error(), "text/html") {
		t.Errorf("an HTML page: %v, want its Content-Type named", err)
	}
}

// An answer with more after its list (two lists run together, a proxy's
// page appended) is not the one list Nexus sends: the mapping would be made
// from its first part alone and printed as whole. Blanks after it are fine.
func TestDiscoverRefusesDataAfterTheList(t *testing.T) {
	one := `[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082}}]`
	for body, ok := range map[string]bool{
		one + " \r\n": true,
		one + ` [{"name":"b","format":"docker","type":"hosted"}]`: false,
		one + "<html>error</html>":                                false,
	} {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
		}))
		repos, err := discover.Fetch(context.Background(), nil, hs.URL, "admin", "admin123")
		hs.Close()
		if ok && (err != nil || len(repos) != 1) {
			t.Errorf("%q: %d repositories, %v", body, len(repos), err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "after the list")) {
			t.Errorf("%q: %d repositories, error %v; want the data after the list named", body, len(repos), err)
		}
	}
}

// An HTTPS Nexus whose certificate comes from a private CA is reachable; it
// is not trusted. The error says so and how to trust it (Go reads
// SSL_CERT_FILE, for discover and serve alike), not "unreachable".
func TestDiscoverUntrustedCertificateSaysHowToTrustIt(t *testing.T) {
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "[]")
	}))
	defer hs.Close()
	_, err := discover.Fetch(context.Background(), nil, hs.URL, "admin", "admin123")
	if err == nil || strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "SSL_CERT_FILE") {
		t.Errorf("a certificate from an unknown CA: %v, want it named untrusted, with SSL_CERT_FILE", err)
	}
}

// An https:// --nexus for Nexus's plain HTTP port (8081 is plain by
// default) reaches Nexus, which answers in plain HTTP; a port speaking
// neither TLS nor HTTP is reached too. Neither is "unreachable": the error
// says the port does not speak TLS and that http:// may be meant.
func TestDiscoverHTTPSToAPlainPortNamesTheScheme(t *testing.T) {
	plain := strings.Replace(nexus(t, ""), "http://", "https://", 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(conn, "SSH-2.0-OpenSSH_9.6\r\n")
			conn.Close()
		}
	}()
	for _, base := range []string{plain, "https://" + ln.Addr().String()} {
		_, err := discover.Fetch(context.Background(), nil, base, "admin", "admin123")
		if err == nil || strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "does not speak TLS") || !strings.Contains(err.Error(), "http://") {
			t.Errorf("%s: %v, want the port said not to speak TLS, with http:// as the hint, not unreachable", base, err)
		}
	}
}

// repositorySettings leaves out what the user may not read the settings of,
// so a group's members may be listed only in part. "Exactly one hosted
// member" is then not known: with a second hosted member unlisted, pushes
// would be sent to whichever one happened to be readable. Such a group is
// not paired, and a note names the member.
func TestDiscoverDoesNotPairAGroupWithUnlistedMembers(t *testing.T) {
	var repos []discover.Repo
	body := `[{"name":"team-a","format":"docker","type":"group","docker":{"httpPort":8082},"group":{"memberNames":["team-a-hosted","team-a-release"]}},
	 {"name":"team-a-hosted","format":"docker","type":"hosted"}]`
	if err := json.Unmarshal([]byte(body), &repos); err != nil {
		t.Fatal(err)
	}
	plan, err := discover.MakePlan(repos, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Ports, " "); got != "8082=team-a" {
		t.Errorf("ports %q, want the group unpaired", plan.Ports)
	}
	if fl := plan.Flags(); !strings.Contains(fl, "team-a-release") {
		t.Errorf("no note names the unlisted member:\n%s", fl)
	}
}

// A Nexus that accepts the connection and sends no answer (a hung JVM, a
// full Jetty pool) is reachable; the error says which limit ended the wait,
// as for an answer that stalls in its body.
func TestDiscoverNamesAnAnswerThatNeverStarts(t *testing.T) {
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer hs.Close()
	defer close(release) // before Close, which waits for the handler
	client := &http.Client{Timeout: 300 * time.Millisecond}
	_, err := discover.Fetch(context.Background(), client, hs.URL, "admin", "admin123")
	if err == nil || strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "in time") {
		t.Errorf("no answer: %v, want a timeout named, not unreachable", err)
	}
}

// A --nexus URL with a password written into it is refused without
// echoing the password, however it is malformed: a wrong scheme or a bad
// port must not print it either (the error goes to terminals and CI logs).
func TestDiscoverBadNexusURLHidesItsPassword(t *testing.T) {
	for _, bad := range []string{"ftp://admin:s3cret@nexus:8081", "http://admin:s3cret@nexus:80a81", "admin:s3cret@nexus:8081", "http://admin:s3cret@", "http://admin:s3cret@nexus:8081/%zz", "http://admin:s3/cr#et@nexus:8081"} {
		err := discover.CheckNexusURL(bad)
		if err == nil || !strings.Contains(err.Error(), "nexus URL") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: %v, want it refused without the password", bad, err)
		}
	}
}

// A --nexus host the dialer refuses is refused before anything is sent,
// as --upstream refuses it: the URL is printed as --upstream.
func TestDiscoverNexusHostDialWouldRefuse(t *testing.T) {
	for _, bad := range []string{"http://127.0.0.01:8081", "http://[fe80::1%25eth%200]:8081", "http://admin:s3cret@10.1:8081"} {
		err := discover.CheckNexusURL(bad)
		if err == nil || !strings.Contains(err.Error(), "is not") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: %v, want it refused naming the host, without the password", bad, err)
		}
	}
	if err := discover.CheckNexusURL("http://nexus.ns.svc.cluster.local.:8081/nexus"); err != nil {
		t.Errorf("a name: %v", err)
	}
}

// A --domain with '_' would give every repository a name docker's
// reference grammar refuses, as a repository name with '_' would: it is
// refused as the operator's mistake, not turned into a note per repository.
func TestDiscoverDomainWithUnderscoreRefused(t *testing.T) {
	if err := discover.CheckDomain("registry_corp.example.com"); err == nil || !strings.Contains(err.Error(), "--domain") {
		t.Errorf("--domain with '_': %v, want it refused", err)
	}
}

// A 403 is not a wrong password: the credentials were taken (or something
// in front of Nexus refuses the request). The error says 403 and does not
// send the operator to re-check --password-file; a 401 still does.
func TestDiscoverTells403From401(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer hs.Close()
	_, err := discover.Fetch(context.Background(), nil, hs.URL, "admin", "admin123")
	if err == nil || !strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "check --user and --password-file") {
		t.Errorf("403: %v, want it told from bad credentials", err)
	}
	if _, err := discover.Fetch(context.Background(), nil, nexus(t, ""), "admin", "wrong"); !errors.Is(err, discover.ErrUnauthorized) || !strings.Contains(err.Error(), "--password-file") {
		t.Errorf("401: %v", err)
	}
}

// TestDiscoverErrorsHideEchoedCredentials: discover prints part of an
// error answer's body, and its Content-Type; something in front of Nexus
// that echoes the request (a proxy's or a WAF's error page listing the
// headers it got) would put the Authorization header, or the password
// decoded, into the operator's terminal and CI logs.
func TestDiscoverErrorsHideEchoedCredentials(t *testing.T) {
	const user, password = "admin", "Pa55w0rdS3cret"
	encoded := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	for _, c := range []struct {
		what string
		h    http.HandlerFunc
	}{
		{"a 500 page echoing the request headers", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "upstream failed; request headers: Authorization: "+r.Header.Get("Authorization"))
		}},
		{"a 502 page echoing the decoded login", func(w http.ResponseWriter, r *http.Request) {
			u, p, _ := r.BasicAuth()
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "no backend for "+u+":"+p)
		}},
		{"a Content-Type echoing the header", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; auth="+strings.ReplaceAll(r.Header.Get("Authorization"), " ", "_"))
			io.WriteString(w, "not json")
		}},
	} {
		hs := httptest.NewServer(c.h)
		_, err := discover.Fetch(context.Background(), nil, hs.URL, user, password)
		hs.Close()
		if err == nil {
			t.Fatalf("%s: no error", c.what)
		}
		if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), encoded) {
			t.Errorf("%s: the error shows the credentials: %v", c.what, err)
		}
	}
}

// A --domain with blanks or dots around it (a quoted shell word, a YAML
// value) passes CheckDomain, which trims as every host check does; the plan
// must then use the trimmed name too, not print "mirror. example.com" and
// "a. example.com", which serve refuses.
func TestDiscoverDomainIsTrimmedLikeItsCheck(t *testing.T) {
	hub := `[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082}},
		{"name":"hub","format":"docker","type":"proxy","proxy":{"remoteUrl":"https://registry-1.docker.io"}}]`
	var repos []discover.Repo
	if err := json.Unmarshal([]byte(hub), &repos); err != nil {
		t.Fatal(err)
	}
	want, err := discover.MakePlan(repos, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, domain := range []string{" example.com", "example.com ", "\texample.com.", ". example.com", " .Example.COM. "} {
		if err := discover.CheckDomain(domain); err != nil {
			t.Errorf("CheckDomain(%q): %v", domain, err)
			continue
		}
		p, err := discover.MakePlan(repos, domain)
		if err != nil {
			t.Errorf("MakePlan(%q): %v", domain, err)
			continue
		}
		if p.YAML() != want.YAML() {
			t.Errorf("--domain %q gives\n%s\nwant\n%s", domain, p.YAML(), want.YAML())
		}
	}
}

// Two repositories whose names differ only in case (or a listing that
// names one twice) make the same <repo>.<domain>: the first keeps it, the
// other gets a note and keeps its ports, as for a taken subdomain, instead
// of two routes for one host, which serve refuses.
func TestDiscoverNamesDifferingInCaseGetOneHost(t *testing.T) {
	body := `[{"name":"team-a","format":"docker","type":"hosted","docker":{"httpPort":8083}},
		{"name":"Team-A","format":"docker","type":"hosted","docker":{"httpPort":8082}}]`
	var repos []discover.Repo
	if err := json.Unmarshal([]byte(body), &repos); err != nil {
		t.Fatal(err)
	}
	plan, err := discover.MakePlan(repos, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := route.Build(route.Spec{Routes: plan.Routes, Ports: plan.Ports}); err != nil {
		t.Errorf("discovered mapping does not build: %v\n%s", err, plan.YAML())
	}
	if got := strings.Join(plan.Routes, " "); got != "team-a.example.com=Team-A" {
		t.Errorf("routes %q", plan.Routes)
	}
	if got := strings.Join(plan.Ports, " "); got != "8082=Team-A 8083=team-a" {
		t.Errorf("ports %q", plan.Ports)
	}
	if w := "# no host name for team-a: team-a.example.com is the host name of Team-A"; !strings.Contains(plan.YAML(), w) {
		t.Errorf("no note %q:\n%s", w, plan.YAML())
	}
}

// An answer that is no HTTP response (a header line without a colon, a
// bad status line, TLS bytes to an http:// URL) or a connection closed
// without one comes from something that was reached: the error says the
// response was malformed, or that no answer came, not "unreachable".
func TestDiscoverMalformedAnswerIsNotUnreachable(t *testing.T) {
	for _, c := range []struct{ answer, want string }{
		{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nbad header line\r\n\r\n[]", "malformed HTTP response"},
		{"HTTP/1.1 2x0 OK\r\n\r\n", "malformed HTTP response"},
		{"\x15\x03\x01\x00\x02\x02\x46", "malformed HTTP response"},
		{"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "malformed HTTP response"},
		{"", "closed the connection without an answer"},
	} {
		_, err := fetchFromRaw(t, c.answer)
		if err == nil || strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("answer %q: %v, want %q, not unreachable", c.answer, err, c.want)
		}
	}
}

// A JSON null where Nexus sends its list, or as an item of it, is not "no
// docker repositories" (a missing privilege, the error would say): it is
// an answer that is not the list of repositories.
func TestDiscoverNullIsNotAnEmptyList(t *testing.T) {
	for _, body := range []string{"null", `[null]`, `[{"name":"d","format":"docker","type":"hosted"},null]`} {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
		}))
		_, err := discover.Fetch(context.Background(), nil, hs.URL, "admin", "admin123")
		hs.Close()
		if err == nil || !strings.Contains(err.Error(), "not the expected JSON") || !strings.Contains(err.Error(), "null") {
			t.Errorf("%s: %v, want it named not the expected JSON", body, err)
		}
	}
}

// With only repositories of other formats listed, the error names them:
// --user may read those, so the docker privilege is what is missing (or
// Nexus has no docker repository), and the list says which Nexus it asked.
func TestDiscoverNoDockerNamesTheOtherFormats(t *testing.T) {
	var repos []discover.Repo
	for _, n := range []string{"maven-central", "npm-proxy", "pypi", "a", "b", "c", "d"} {
		repos = append(repos, discover.Repo{Name: n, Format: "maven2"})
	}
	_, err := discover.MakePlan(repos[:2], "")
	if !errors.Is(err, discover.ErrNoDocker) || !strings.Contains(err.Error(), "only repositories of other formats: maven-central (maven2), npm-proxy (maven2)") {
		t.Errorf("two maven repositories: %v", err)
	}
	_, err = discover.MakePlan(repos, "")
	if !errors.Is(err, discover.ErrNoDocker) || !strings.Contains(err.Error(), "and 2 more") {
		t.Errorf("seven: %v, want five named and the rest counted", err)
	}
}

// fetchFromRaw runs discover.Fetch against a server that reads the request
// and writes answer, raw, then closes.
func fetchFromRaw(t *testing.T, answer string) ([]discover.Repo, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Read(make([]byte, 4096))
		io.WriteString(conn, answer)
	}()
	return discover.Fetch(context.Background(), nil, "http://"+ln.Addr().String(), "admin", "admin123")
}
