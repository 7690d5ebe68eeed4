package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

const mirrorHost = "mirror.nexmux.test"

// mirrorStack runs the fixture's proxy repositories behind one mirror name
// (docker.io, ghcr.io, quay.io, registry.k8s.io) with anonymous access off.
func mirrorStack(t *testing.T, authFile bool) *stack.Stack {
	t.Helper()
	cfg := config.Config{}
	for _, m := range fixtures.Mirrors {
		cfg.Mirror = append(cfg.Mirror, mirrorHost+"/"+m.Remote+"="+m.Repo)
	}
	if authFile {
		f := filepath.Join(t.TempDir(), "mirror-auth")
		if err := os.WriteFile(f, []byte(stack.User+":"+stack.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.MirrorAuthFile = f
	}
	s := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{Repos: fixtures.MirrorRepos("")}})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	return s
}

func seeded(t *testing.T, s *stack.Stack, repo, image string) string {
	t.Helper()
	n, tag, _ := strings.Cut(image, ":")
	sd, ok := s.Nexus.Seeded(repo, n, tag)
	if !ok {
		t.Fatalf("%s not seeded in %s", image, repo)
	}
	return sd.Digest.String()
}

// mirrorGet sends one raw request to the mirror name.
func mirrorGet(t *testing.T, s *stack.Stack, method, path string, auth bool) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+mirrorHost+":"+itoa(s.Port)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Opaque keeps the path bytes exactly as written.
	req.URL.Opaque = "//" + req.URL.Host + strings.SplitN(path, "?", 2)[0]
	if auth {
		req.SetBasicAuth(stack.User, stack.Password)
	}
	resp, err := (&http.Client{Transport: s.Transport(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestMirrorPullsEveryRegistry pulls each remote's image with crane in the
// prefix form (skopeo/CRI-O) and through ?ns= (containerd), anonymously,
// with --mirror-auth-file; a misroute shows as a wrong digest.
func TestMirrorPullsEveryRegistry(t *testing.T) {
	s := mirrorStack(t, true)
	ctx := context.Background()
	opts := []crane.Option{crane.WithTransport(s.Transport()), crane.WithAuth(authn.Anonymous), crane.WithContext(ctx)}
	host := mirrorHost + ":" + itoa(s.Port)
	for _, m := range fixtures.Mirrors {
		for _, img := range []string{m.Image, fixtures.ProbeImage} {
			want := seeded(t, s, m.Repo, img)
			// Prefix form; docker.io's library/ image has the prefix too.
			got, err := crane.Digest(host+"/"+m.Remote+"/"+img, opts...)
			if err != nil || got != want {
				t.Errorf("prefix %s/%s: digest %s err %v, want %s", m.Remote, img, got, err, want)
			}
			// ns form, as containerd sends it.
			n, tag, _ := strings.Cut(img, ":")
			resp, _ := mirrorGet(t, s, http.MethodHead, "/v2/"+n+"/manifests/"+tag+"?ns="+m.Remote, false)
			if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want {
				t.Errorf("ns=%s %s: %d %s, want %s", m.Remote, img, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), want)
			}
		}
	}
	// No ns, no prefix: docker.io (docker's registry-mirrors), library/ kept.
	want := seeded(t, s, "dockerhub-proxy", fixtures.ProbeImage)
	if got, err := crane.Digest(host+"/"+fixtures.ProbeImage, opts...); err != nil || got != want {
		t.Errorf("default docker.io probe: %s %v, want %s", got, err, want)
	}
	// A full pull (manifest and every blob) through the prefix form.
	ref, _ := name.ParseReference(host + "/ghcr.io/acme/app:1")
	img, err := remote.Image(ref, remote.WithTransport(s.Transport()), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("pull through the prefix form: %v", err)
	}
	// index.docker.io is docker.io; case is ignored.
	resp, _ := mirrorGet(t, s, http.MethodHead, "/v2/library/alpine/manifests/3?ns=Index.Docker.IO", false)
	if resp.StatusCode != 200 {
		t.Errorf("ns=Index.Docker.IO: %d", resp.StatusCode)
	}
	// An image named with the HTTPS port (ghcr.io:443/...) is the same
	// registry: containerd sends its host as written.
	for _, p := range []string{"/v2/library/alpine/manifests/3?ns=docker.io%3A443", "/v2/index.docker.io:443/library/alpine/manifests/3"} {
		if resp, _ := mirrorGet(t, s, http.MethodHead, p, false); resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}

// TestMirrorRefusals: writes, unknown registries, disagreement and path
// tricks are answered by nexmux; none of them reaches Nexus.
func TestMirrorRefusals(t *testing.T) {
	s := mirrorStack(t, true)
	s.Nexus.ResetRequests()
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"PUT", "/v2/library/alpine/manifests/3", 405, "UNSUPPORTED"},
		{"DELETE", "/v2/ghcr.io/acme/app/manifests/1", 405, "UNSUPPORTED"},
		{"POST", "/v2/acme/app/blobs/uploads/?ns=ghcr.io", 405, "UNSUPPORTED"},
		{"PATCH", "/v2/acme/app/blobs/uploads/x", 405, "UNSUPPORTED"},
		{"DELETE", "/repository/ghcr-proxy/v2/acme/app/manifests/1", 405, "UNSUPPORTED"},
		{"PROPFIND", "/v2/library/alpine/manifests/3", 405, "UNSUPPORTED"},
		{"GET", "/v2/acme/app/manifests/1?ns=docker.example.org", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/gcr.io/acme/app/manifests/1", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/registry.corp.test:5000/x/manifests/1", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/acme/app/manifests/1?ns=registry.corp.test%3A5000", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/ghcr.io/acme/app/manifests/1?ns=quay.io", 400, "NAME_INVALID"},
		// Docker Hub namespaces never hold a dot: with ns=docker.io a
		// registry host first is a prefix, mirrored here or not, and
		// disagrees with ns.
		{"GET", "/v2/gcr.io/acme/app/manifests/1?ns=docker.io", 400, "NAME_INVALID"},
		{"GET", "/v2/localhost:5000/acme/app/manifests/1?ns=index.docker.io", 400, "NAME_INVALID"},
		{"GET", "/v2/acme/app/manifests/1?ns=ghcr.io&ns=quay.io", 400, "NAME_INVALID"},
		{"GET", "/v2/ghcr.io%2facme/app/manifests/1", 400, "NAME_INVALID"},
		{"GET", "/v2/ghcr%2eio/acme/app/manifests/1", 400, "NAME_INVALID"},
		{"GET", "/v2/ghcr.io;x=1/acme/app/manifests/1", 400, "NAME_INVALID"},
		{"GET", "/v2/user@ghcr.io/acme/app/manifests/1", 400, "NAME_INVALID"},
		{"GET", "/v2/ghcr.io./acme/app/manifests/1", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/ghcr.io/%2e%2e/quay.io/acme/tool/manifests/2", 400, "NAME_INVALID"},
		{"GET", "/v2/_catalog", 404, "NOT_FOUND"},
		{"GET", "/v2/ghcr.io/_catalog", 404, "NOT_FOUND"},
		{"GET", "/repository/ghcr-proxy/v2/_catalog", 404, "NOT_FOUND"},
		{"GET", "/repository/ghcr-proxy/v2/acme/app/blobs/uploads/x", 404, "NOT_FOUND"},
		{"GET", "/v2/acme/app/blobs/uploads/x?ns=ghcr.io", 404, "NOT_FOUND"},
		{"GET", "/repository/team-a/v2/acme/app/manifests/1", 404, "NOT_FOUND"},
		{"GET", "/service/rest/v1/repositories", 404, "NOT_FOUND"},
		{"GET", "/v1/_ping", 404, "NOT_FOUND"},
	} {
		resp, body := mirrorGet(t, s, c.method, c.path, false)
		if resp.StatusCode != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, resp.StatusCode, strings.TrimSpace(body), c.status, c.code)
		}
		if allow := resp.Header.Get("Allow"); (c.status == 405) != (allow == "GET, HEAD") {
			t.Errorf("%s %s: %d with Allow %q: a 405 names the methods served, GET and HEAD", c.method, c.path, resp.StatusCode, allow)
		}
	}
	// The token endpoint takes containerd's POST too.
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", "/v2/token", "GET, HEAD, POST"}, {"PROPFIND", "/v2/token", "GET, HEAD, POST"},
		{"PUT", "/repository/ghcr-proxy/v2/token", "GET, HEAD, POST"}, {"PROPFIND", "/repository/ghcr-proxy/v2/token", "GET, HEAD, POST"},
		{"PROPFIND", "/repository/team-a/v2/token", "GET, HEAD"}, // not the mirror's: nothing is served there
	} {
		if resp, _ := mirrorGet(t, s, c.method, c.path, false); resp.StatusCode != 405 || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d, Allow %q, want %q", c.method, c.path, resp.StatusCode, resp.Header.Get("Allow"), c.allow)
		}
	}
	if reqs := s.Nexus.Requests(); len(reqs) != 0 {
		t.Errorf("refused requests reached Nexus: %+v", reqs[0])
	}
	// Without a docker.io entry, a request naming no registry is unknown.
	cfg := config.Config{Mirror: []string{mirrorHost + "/ghcr.io=ghcr-proxy"}}
	s2 := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{Repos: fixtures.MirrorRepos("")}})
	resp, body := mirrorGet(t, s2, "GET", "/v2/library/alpine/manifests/3", true)
	if resp.StatusCode != 404 || !strings.Contains(body, "NAME_UNKNOWN") {
		t.Errorf("no registry, no docker.io: %d %s", resp.StatusCode, body)
	}
	if reqs := s2.Nexus.Requests(); len(reqs) != 0 {
		t.Errorf("reached Nexus: %+v", reqs[0])
	}
}

// TestMirrorForwardsRawAndStripsNS: the query minus ns and the path minus
// the prefix reach the right repository byte for byte.
func TestMirrorForwardsRawAndStripsNS(t *testing.T) {
	s := mirrorStack(t, true)
	s.Nexus.ResetRequests()
	mirrorGet(t, s, "GET", "/v2/quay.io/acme/tool/tags/list?n=2&last=a%2Cb&ns=quay.io&x=%7E", false)
	mirrorGet(t, s, "GET", "/v2/library/alpine/tags/list?ns=docker.io&n=1", false)
	reqs := s.Nexus.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests reached Nexus, want 2", len(reqs))
	}
	if r := reqs[0]; r.Repo != "quay-proxy" || r.RawPath != "/repository/quay-proxy/v2/acme/tool/tags/list" || r.RawQuery != "n=2&last=a%2Cb&x=%7E" {
		t.Errorf("prefix+ns: %s %s ? %s", r.Repo, r.RawPath, r.RawQuery)
	}
	if r := reqs[1]; r.Repo != "dockerhub-proxy" || r.RawPath != "/repository/dockerhub-proxy/v2/library/alpine/tags/list" || r.RawQuery != "n=1" {
		t.Errorf("ns: %s %s ? %s", r.Repo, r.RawPath, r.RawQuery)
	}
	if got := reqs[0].Header.Get("Authorization"); !strings.HasPrefix(got, "Basic ") {
		t.Errorf("--mirror-auth-file credentials not sent: %q", got)
	}
	// /v2/ and the token: docker.io's repository; a passthrough path of
	// a configured repository goes to that repository.
	s.Nexus.ResetRequests()
	mirrorGet(t, s, "GET", "/v2/", false)
	mirrorGet(t, s, "GET", "/v2/token?scope=repository:ghcr.io/acme/app:pull", false)
	mirrorGet(t, s, "GET", "/repository/k8s-proxy/v2/pause/manifests/3.10", false)
	reqs = s.Nexus.Requests()
	if len(reqs) != 3 || reqs[0].Repo != "dockerhub-proxy" || reqs[1].Repo != "dockerhub-proxy" || reqs[2].Repo != "k8s-proxy" {
		t.Errorf("/v2/, token, passthrough went to %+v", reqs)
	}
	if len(reqs) == 3 && reqs[1].Header.Get("Authorization") != "" {
		t.Errorf("the token request carried --mirror-auth-file credentials: %q", reqs[1].Header.Get("Authorization"))
	}
}

// TestMirrorAuthFileGivesNoToken: --mirror-auth-file credentials are added
// to reads, never to a token request. Otherwise an anonymous client gets
// a token of the mirror's user (a Nexus token is good everywhere) and
// pushes with it on a team's name.
func TestMirrorAuthFileGivesNoToken(t *testing.T) {
	s := mirrorStack(t, true)
	for _, path := range []string{"/v2/token?scope=x", "/v2/ghcr.io/token?scope=x", "/repository/ghcr-proxy/v2/token?scope=x"} {
		for _, method := range []string{"GET", "POST"} {
			resp, body := mirrorGet(t, s, method, path, false)
			if resp.StatusCode == 200 || strings.Contains(body, "DockerToken") {
				t.Errorf("anonymous %s %s: %d %s", method, path, resp.StatusCode, body)
			}
		}
	}
	// Reads still carry them: an anonymous pull works.
	host := mirrorHost + ":" + itoa(s.Port)
	anon := []crane.Option{crane.WithTransport(s.Transport()), crane.WithAuth(authn.Anonymous)}
	if _, err := crane.Digest(host+"/ghcr.io/"+fixtures.ProbeImage, anon...); err != nil {
		t.Errorf("anonymous pull with --mirror-auth-file: %v", err)
	}
}

// TestMirrorTagsPagingKeepsForm pages a tags list through Link: the next
// URL comes back on the mirror name in the form the client used.
func TestMirrorTagsPagingKeepsForm(t *testing.T) {
	s := mirrorStack(t, true)
	base := "https://" + mirrorHost + ":" + itoa(s.Port)
	for _, c := range []struct{ first, keep string }{
		{"/v2/docker.io/library/alpine/tags/list?n=5", "/v2/docker.io/library/alpine/tags/list?"},
		{"/v2/library/alpine/tags/list?n=5&ns=docker.io", "/v2/library/alpine/tags/list?"},
		{"/v2/library/alpine/tags/list?n=5", "/v2/library/alpine/tags/list?"},
		// A client of Nexus's own URL form: a bare /v2/ Link would read
		// the default registry's repository.
		{"/repository/dockerhub-proxy/v2/library/alpine/tags/list?n=5", "/repository/dockerhub-proxy/v2/library/alpine/tags/list?"},
	} {
		var tags []string
		next := c.first
		for pages := 0; next != ""; pages++ {
			if pages > 10 {
				t.Fatalf("%s: too many pages", c.first)
			}
			resp, body := mirrorGet(t, s, "GET", next, false)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", next, resp.StatusCode, body)
			}
			var tl struct{ Tags []string }
			if err := json.Unmarshal([]byte(body), &tl); err != nil {
				t.Fatal(err)
			}
			tags = append(tags, tl.Tags...)
			next = ""
			if l := resp.Header.Get("Link"); l != "" {
				u := l[strings.IndexByte(l, '<')+1 : strings.IndexByte(l, '>')]
				u = strings.TrimPrefix(u, base)
				if !strings.HasPrefix(u, c.keep) || strings.Contains(c.first, "ns=") != strings.Contains(u, "ns=docker.io") {
					t.Fatalf("%s: Link %q lost the client's form", c.first, l)
				}
				next = u
			}
		}
		if len(tags) != fixtures.PagedTags+1 {
			t.Errorf("%s: %d tags through Link, want %d", c.first, len(tags), fixtures.PagedTags+1)
		}
	}
}

// TestMirrorAuthWithoutAuthFile: with anonymous access off, anonymous
// pulls are refused; a logged-in crane gets a token from the realm nexmux
// hands out, and that token works for every registry of the name.
func TestMirrorAuthWithoutAuthFile(t *testing.T) {
	s := mirrorStack(t, false)
	host := mirrorHost + ":" + itoa(s.Port)
	anon := []crane.Option{crane.WithTransport(s.Transport()), crane.WithAuth(authn.Anonymous)}
	if _, err := crane.Digest(host+"/ghcr.io/acme/app:1", anon...); err == nil {
		t.Error("anonymous pull without --mirror-auth-file and anonymous access off succeeded")
	}
	resp, _ := mirrorGet(t, s, "GET", "/v2/acme/app/manifests/1?ns=ghcr.io", false)
	ch := resp.Header.Get("Www-Authenticate")
	if resp.StatusCode != 401 || !strings.Contains(ch, `realm="https://`+host+`/v2/token"`) {
		t.Fatalf("challenge: %d %q", resp.StatusCode, ch)
	}
	user := []crane.Option{crane.WithTransport(s.Transport()), crane.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password})}
	for _, m := range fixtures.Mirrors {
		want := seeded(t, s, m.Repo, fixtures.ProbeImage)
		if got, err := crane.Digest(host+"/"+m.Remote+"/"+fixtures.ProbeImage, user...); err != nil || got != want {
			t.Errorf("%s with login: %s %v, want %s", m.Remote, got, err, want)
		}
	}
	// The token POST (containerd's OAuth2 form) reaches Nexus, which
	// refuses it so the client falls back to GET.
	resp, _ = mirrorGet(t, s, "POST", "/v2/token", false)
	if resp.StatusCode == 405 {
		t.Errorf("token POST refused by nexmux")
	}
}

// TestMirrorHTTP2SOCKSHAAndAuthReload: a mirror name works over HTTP/2,
// through the SOCKS5 ingress and with the first HA node down; a reload
// of --mirror-auth-file applies to the next request.
func TestMirrorHTTP2SOCKSHAAndAuthReload(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "mirror.auth")
	writeFile(t, auth, stack.User+":"+stack.Password+"\n")
	file := filepath.Join(dir, "nexmux.yaml")
	yaml := "socks5-listen: 127.0.0.1:0\nmirror-auth-file: " + auth + "\nmirror:\n"
	for _, m := range fixtures.Mirrors {
		yaml += "  - " + mirrorHost + "/" + m.Remote + "=" + m.Repo + "\n"
	}
	writeFile(t, file, yaml)
	s := stack.Start(t, stack.Options{ConfigFile: file, Nodes: 2, Daemon: daemon.Options{WatchInterval: fastWatch},
		Fixture: fixtures.Config{Repos: fixtures.MirrorRepos("")}})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	want := seeded(t, s, "ghcr-proxy", "acme/app:1")
	resp, _ := mirrorGet(t, s, http.MethodHead, "/v2/acme/app/manifests/1?ns=ghcr.io", false)
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want {
		t.Errorf("HTTP/2: %s %d %s", resp.Proto, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	// SOCKS5: the client CONNECTs to the mirror name itself.
	if got, err := crane.Digest(mirrorHost+"/ghcr.io/acme/app:1", crane.WithTransport(socksTransport(s, nil)), crane.WithAuth(authn.Anonymous)); err != nil || got != want {
		t.Errorf("SOCKS5: %s %v, want %s", got, err, want)
	}
	// HA: the first node goes away; pulls move to the second.
	if err := s.NexusNodes[0].SetDown(true); err != nil {
		t.Fatal(err)
	}
	if got, err := crane.Digest(mirrorHost+":"+itoa(s.Port)+"/ghcr.io/acme/app:1", crane.WithTransport(s.Transport()), crane.WithAuth(authn.Anonymous)); err != nil || got != want {
		t.Errorf("node 1 down: %s %v, want %s", got, err, want)
	}
	// A wrong password in the reloaded file: Nexus now refuses.
	writeFile(t, auth, stack.User+":wrong\n")
	waitFor(t, "the reloaded --mirror-auth-file", func() bool {
		resp, _ := mirrorGet(t, s, http.MethodHead, "/v2/acme/app/manifests/1?ns=ghcr.io", false)
		return resp.StatusCode == http.StatusUnauthorized
	})
}

// TestMirrorProxyProtocolLogsAndMetrics: behind a load balancer sending
// PROXY headers, a mirror pull works; its access lines carry the real
// client and the registry, and nexmux_requests_total a registry label with
// configured values only.
func TestMirrorProxyProtocolLogsAndMetrics(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "mirror.auth")
	writeFile(t, auth, stack.User+":"+stack.Password+"\n")
	cfg := config.Config{MirrorAuthFile: auth, ProxyProtocolFrom: []string{"127.0.0.1/32"}, MetricsListen: "127.0.0.1:0"}
	for _, m := range fixtures.Mirrors {
		cfg.Mirror = append(cfg.Mirror, mirrorHost+"/"+m.Remote+"="+m.Repo)
	}
	logs := &logBuffer{}
	s := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{Repos: fixtures.MirrorRepos("")},
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	d := &ppDialer{header: ppV2(t, "203.0.113.9:5555", "127.0.0.1:443"), mode: ppSeparate}
	want := seeded(t, s, "ghcr-proxy", "acme/app:1")
	if got, err := crane.Digest(mirrorHost+":"+itoa(s.Port)+"/ghcr.io/acme/app:1", crane.WithTransport(d.transport(s)), crane.WithAuth(authn.Anonymous)); err != nil || got != want {
		t.Fatalf("through PROXY: %s %v, want %s", got, err, want)
	}
	// An unknown registry is refused and labelled with no registry.
	resp, err := (&http.Client{Transport: d.transport(s)}).Get("https://" + mirrorHost + ":" + itoa(s.Port) + "/v2/x/manifests/1?ns=evil.example")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("unknown ns: %v %v", resp, err)
	}
	resp.Body.Close()
	if l := logs.String(); !strings.Contains(l, "client=203.0.113.9:5555") || !strings.Contains(l, "registry=ghcr.io") || strings.Contains(l, "registry=evil") {
		t.Errorf("access log:\n%s", l)
	}
	mf := metricsText(t, s.Daemon.Addr("metrics").String())
	if got := metric(mf, "nexmux_requests_total", map[string]string{"route": mirrorHost, "method": "HEAD", "class": "2xx", "registry": "ghcr.io"}); got < 1 {
		t.Errorf("requests_total{registry=ghcr.io}: %v", got)
	}
	if got := metric(mf, "nexmux_requests_total", map[string]string{"route": mirrorHost, "method": "GET", "class": "4xx", "registry": ""}); got != 1 {
		t.Errorf("requests_total{registry=\"\"} for the unknown ns: %v, want 1", got)
	}
}

// nsTransport sends requests the way containerd does to a mirror named in
// hosts.toml: ?ns=<the image's registry> on every registry API request
// below an image name, never on the token request or the /v2/ ping.
type nsTransport struct {
	ns   string
	next http.RoundTripper
}

func (t nsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if p := r.URL.Path; p != "/v2/" && !strings.HasSuffix(p, "/v2/token") {
		r = r.Clone(r.Context())
		q := r.URL.Query()
		q.Set("ns", t.ns)
		r.URL.RawQuery = q.Encode()
	}
	return t.next.RoundTrip(r)
}

// TestMirrorNSNameWithDot: with ?ns=, containerd sends the image's name as
// it is, and outside Docker Hub a name's first component may hold a dot
// (gcr.io/google.com/cloudsdktool/..., GitLab user names like john.smith):
// it is part of the name, not a registry prefix. A first segment naming the
// ns registry itself is override_path's prefix; one naming another
// registry of this mirror still disagrees with ns.
func TestMirrorNSNameWithDot(t *testing.T) {
	auth := filepath.Join(t.TempDir(), "mirror-auth")
	writeFile(t, auth, stack.User+":"+stack.Password+"\n")
	cfg := config.Config{MirrorAuthFile: auth}
	for _, m := range fixtures.Mirrors {
		cfg.Mirror = append(cfg.Mirror, mirrorHost+"/"+m.Remote+"="+m.Repo)
	}
	cfg.Mirror = append(cfg.Mirror, mirrorHost+"/gcr.io=gcr-proxy")
	repos := append(fixtures.MirrorRepos(""), fixtures.Repo{Name: "gcr-proxy", Type: fixtures.Proxy, Online: true, RemoteURL: "https://gcr.io"})
	s := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{Repos: repos}})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	const image = "google.com/cloudsdktool/cloud-sdk"
	if err := s.Nexus.Seed("gcr-proxy", image, "1", img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	host := mirrorHost + ":" + itoa(s.Port)
	tr := nsTransport{ns: "gcr.io", next: s.Transport()}
	// hosts.toml _default (ns only), then override_path (prefix and ns).
	for _, ref := range []string{host + "/" + image + ":1", host + "/gcr.io/" + image + ":1"} {
		r, _ := name.ParseReference(ref)
		pulled, err := remote.Image(r, remote.WithTransport(tr), remote.WithAuth(authn.Anonymous))
		if err != nil {
			t.Errorf("%s with ns=gcr.io: %v", ref, err)
			continue
		}
		if got, _ := pulled.Digest(); got != want {
			t.Errorf("%s with ns=gcr.io: digest %s, want %s", ref, got, want)
		}
		if err := validate.Image(pulled); err != nil {
			t.Errorf("%s with ns=gcr.io: %v", ref, err)
		}
	}
	resp, body := mirrorGet(t, s, http.MethodGet, "/v2/ghcr.io/acme/app/manifests/1?ns=gcr.io", false)
	if resp.StatusCode != 400 || !strings.Contains(body, "NAME_INVALID") {
		t.Errorf("a prefix naming another mirrored registry than ns: %d %s, want 400 NAME_INVALID", resp.StatusCode, body)
	}
}

// TestMirrorNexusFormNSMustAgree: containerd pointed at Nexus's own URL form
// (a hosts.toml host "https://mirror/repository/dockerhub-proxy", put in
// _default) still says which registry it pulls with ?ns=. A pull of
// ghcr.io/probe:1 must not be served Docker Hub's probe:1 (another image
// under the same name): ns and the repository must agree, as ns and a path
// prefix must, and an ns this name does not mirror is unknown, so
// containerd moves on to its next host.
func TestMirrorNexusFormNSMustAgree(t *testing.T) {
	s := mirrorStack(t, true)
	const image = "/v2/probe/manifests/1"
	for _, c := range []struct {
		path   string
		status int
		code   string // JSON error code of a refusal
		repo   string // whose probe:1 a 200 is
	}{
		{"/repository/dockerhub-proxy" + image + "?ns=docker.io", 200, "", "dockerhub-proxy"},
		{"/repository/dockerhub-proxy" + image + "?ns=index.docker.io", 200, "", "dockerhub-proxy"},
		{"/repository/ghcr-proxy" + image + "?ns=ghcr.io", 200, "", "ghcr-proxy"},
		{"/repository/dockerhub-proxy" + image, 200, "", "dockerhub-proxy"},
		{"/repository/dockerhub-proxy" + image + "?ns=ghcr.io", 400, "NAME_INVALID", ""},
		{"/repository/ghcr-proxy/v2/probe/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000?ns=quay.io", 400, "NAME_INVALID", ""},
		{"/repository/dockerhub-proxy" + image + "?ns=gcr.io", 404, "NAME_UNKNOWN", ""},
	} {
		s.Nexus.ResetRequests()
		resp, body := mirrorGet(t, s, http.MethodGet, c.path, false)
		if resp.StatusCode != c.status || c.code != "" && !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, resp.StatusCode, strings.TrimSpace(body), c.status, c.code)
			continue
		}
		if c.repo != "" {
			if want := seeded(t, s, c.repo, fixtures.ProbeImage); resp.Header.Get("Docker-Content-Digest") != want {
				t.Errorf("GET %s: digest %s, want %s's %s", c.path, resp.Header.Get("Docker-Content-Digest"), c.repo, want)
			}
		} else if reqs := s.Nexus.Requests(); len(reqs) != 0 {
			t.Errorf("GET %s reached Nexus as %s", c.path, reqs[0].RawPath)
		}
	}
}

// TestMirrorPrefixWithoutOverridePath: containerd appends /v2 to a
// hosts.toml host path unless override_path = true, so the README's
// [host."https://mirror/v2/ghcr.io"] without it sends
// /v2/ghcr.io/v2/acme/app/manifests/1?ns=ghcr.io. Read as the prefix form,
// that is the image v2/acme/app: the ghcr.io proxy would fetch whatever the
// GitHub account "v2" publishes under that name for every ghcr.io pull.
// nexmux refuses it (400: containerd moves on to its next host); CRI-O's
// prefix form, which has no ns and appends nothing, still reads v2/...
func TestMirrorPrefixWithoutOverridePath(t *testing.T) {
	s := mirrorStack(t, true)
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Nexus.Seed("ghcr-proxy", "v2/acme/app", "1", img); err != nil {
		t.Fatal(err)
	}
	other, _ := img.Digest()
	cfgBlob, _ := img.ConfigName()
	for _, c := range []struct {
		path   string
		status int
		digest string
	}{
		{"/v2/ghcr.io/v2/acme/app/manifests/1?ns=ghcr.io", 400, ""},
		{"/v2/ghcr.io/v2/acme/app/blobs/" + cfgBlob.String() + "?ns=ghcr.io", 400, ""},
		{"/v2/ghcr.io/acme/app/manifests/1?ns=ghcr.io", 200, seeded(t, s, "ghcr-proxy", "acme/app:1")},
		{"/v2/ghcr.io/v2/acme/app/manifests/1", 200, other.String()},
	} {
		s.Nexus.ResetRequests()
		resp, body := mirrorGet(t, s, http.MethodGet, c.path, false)
		if resp.StatusCode != c.status || c.status == 400 && !strings.Contains(body, `"code":"NAME_INVALID"`) {
			t.Errorf("GET %s: %d %s, want %d", c.path, resp.StatusCode, strings.TrimSpace(body), c.status)
			continue
		}
		if c.digest != "" && resp.Header.Get("Docker-Content-Digest") != c.digest {
			t.Errorf("GET %s: digest %s, want %s", c.path, resp.Header.Get("Docker-Content-Digest"), c.digest)
		}
		if reqs := s.Nexus.Requests(); c.status == 400 && len(reqs) != 0 {
			t.Errorf("GET %s reached Nexus as %s", c.path, reqs[0].RawPath)
		}
	}
}

// TestMirrorRegistryAtIPv6Literal: a registry named by an IPv6 literal
// ([fd00::5]:5000/app:1) is mirrored as one named by an IPv4 literal
// (10.0.0.5:5000) is: --mirror takes it and containerd's ?ns= (URL-encoded
// brackets and colons) reaches its repository.
func TestMirrorRegistryAtIPv6Literal(t *testing.T) {
	const reg = "[fd00::5]:5000"
	auth := filepath.Join(t.TempDir(), "mirror-auth")
	writeFile(t, auth, stack.User+":"+stack.Password+"\n")
	cfg := config.Config{MirrorAuthFile: auth}
	for _, m := range fixtures.Mirrors {
		cfg.Mirror = append(cfg.Mirror, mirrorHost+"/"+m.Remote+"="+m.Repo)
	}
	cfg.Mirror = append(cfg.Mirror, mirrorHost+"/[FD00:0::5]:5000=v6-proxy")
	repos := append(fixtures.MirrorRepos(""), fixtures.Repo{Name: "v6-proxy", Type: fixtures.Proxy, Online: true, RemoteURL: "https://" + reg})
	s := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{Repos: repos}})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Nexus.Seed("v6-proxy", "corp/app", "1", img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	r, _ := name.ParseReference(mirrorHost + ":" + itoa(s.Port) + "/corp/app:1")
	pulled, err := remote.Image(r, remote.WithTransport(nsTransport{ns: reg, next: s.Transport()}), remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatalf("pull with ns=%s: %v", reg, err)
	}
	if got, _ := pulled.Digest(); got != want {
		t.Errorf("pull with ns=%s: digest %s, want %s", reg, got, want)
	}
	if err := validate.Image(pulled); err != nil {
		t.Errorf("pull with ns=%s: %v", reg, err)
	}
	// Another IPv6 registry is not mirrored here: unknown, never Nexus's.
	if resp, _ := mirrorGet(t, s, http.MethodHead, "/v2/corp/app/manifests/1?ns=%5Bfd00%3A%3A6%5D%3A5000", false); resp.StatusCode != http.StatusNotFound {
		t.Errorf("ns=[fd00::6]:5000: %d, want 404", resp.StatusCode)
	}
}
