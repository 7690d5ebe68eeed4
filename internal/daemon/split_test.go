package daemon_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// oneName gives each team one name for push and pull on Nexus OSS.
func oneName() config.Config {
	return config.Config{Route: []string{
		"team-a.nexmux.test=pull:team-a,push:team-a-hosted",
		"team-b.nexmux.test=team-b", // no push repository: pushes must fail clearly
	}}
}

func TestOneNamePushThenPull(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneName()})
	for i := 0; i < 2; i++ {
		where := fmt.Sprintf("%s/one/app:%d", st.Host("team-a"), i)
		img := pushImage(t, st, where)
		// Right after the push the tag is visible through the group.
		pullVerify(t, st, where, img)
	}
	// Every write went to the hosted repository, every manifest read to
	// the group.
	for _, r := range st.Nexus.Requests() {
		write := r.Method != http.MethodGet && r.Method != http.MethodHead
		if write && r.Repo != "team-a-hosted" {
			t.Errorf("%s %s went to %q", r.Method, r.RawPath, r.Repo)
		}
		if r.Method == http.MethodGet && strings.Contains(r.RawPath, "/manifests/") && r.Repo != "team-a" {
			t.Errorf("manifest read %s went to %q, not the group", r.RawPath, r.Repo)
		}
	}
}

func TestOneNamePushUploadsBaseLayersHeldOnlyByProxyMember(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneName()})
	base, err := random.Image(32<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	// The base image lives only in the proxy member (standing in for a
	// proxy of Docker Hub), so a blob HEAD through the group says "exists".
	if err := st.Nexus.Seed("team-a-proxy", "library/base", "1", base); err != nil {
		t.Fatal(err)
	}
	pullVerify(t, st, st.Host("team-a")+"/library/base:1", base)

	top, err := random.Layer(16<<10, "application/vnd.docker.image.rootfs.diff.tar.gzip")
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, top)
	if err != nil {
		t.Fatal(err)
	}
	where := st.Host("team-a") + "/team/derived:1"
	if err := remote.Write(ref(t, where), img, st.Remote(ctxT(t))...); err != nil {
		t.Fatalf("push of an image on a proxied base: %v", err)
	}
	pullVerify(t, st, where, img)

	// The base layers were uploaded into the hosted repository.
	baseLayers, _ := base.Layers()
	for _, l := range baseLayers {
		d, _ := l.Digest()
		var uploaded bool
		for _, r := range st.Nexus.Requests() {
			if r.Repo == "team-a-hosted" && r.Method == http.MethodPut && strings.Contains(r.RawQuery, strings.Replace(d.String(), ":", "%3A", 1)) {
				uploaded = true
			}
		}
		if !uploaded {
			t.Errorf("base layer %s was not uploaded to the hosted repository", d)
		}
	}
}

func TestOneNameHeadThenGetManifest(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneName()})
	img := pushImage(t, st, st.Host("team-a")+"/resolve/app:1")
	want, _ := img.Digest()
	cl := &http.Client{Transport: st.Transport()}
	// containerd and BuildKit resolve with HEAD, then GET by digest.
	req, _ := http.NewRequest(http.MethodHead, "https://"+st.Host("team-a")+"/v2/resolve/app/manifests/1", nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("HEAD manifest: %d digest %q, want 200 %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), want)
	}
	req, _ = http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/resolve/app/manifests/"+want.String(), nil)
	req.Header = resp.Request.Header.Clone()
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET manifest by digest: %d", resp.StatusCode)
	}
}

func TestPushWithoutPushRepositoryIsDenied(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneName()})
	img, _ := random.Image(1024, 1)
	err := remote.Write(ref(t, st.Host("team-b")+"/x/app:1"), img, st.Remote(ctxT(t))...)
	if err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "PRO-licensed") {
		t.Fatalf("push to a group-only route: %v, want Nexus's DENIED error", err)
	}
}

// A hosted repository refuses a manifest whose blobs it does not hold
// itself, even when its group serves them (the proxy member's base
// image): Nexus's MANIFEST_BLOB_UNKNOWN reaches the client through a
// one-name route and the hosted repository's own name.
func TestManifestWithBlobsOnlyInTheGroupRefused(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneNameWithHosted()})
	base, _ := random.Image(1024, 2)
	if err := st.Nexus.Seed("team-a-proxy", "library/base", "1", base); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{st.Host("team-a"), st.Host("team-a-push")} {
		err := remote.Put(ref(t, host+"/library/base:mine"), base, st.Remote(ctxT(t))...)
		if err == nil || !strings.Contains(err.Error(), "MANIFEST_BLOB_UNKNOWN") {
			t.Errorf("manifest PUT on %s without its blobs in hosted: %v, want MANIFEST_BLOB_UNKNOWN", host, err)
		}
	}
}

// On a one-name route, /v2/ and token requests other than a push's go to
// the group. Taken offline, it must not fail pushes to the hosted
// repository, which is online: docker, crane and skopeo ping /v2/ first,
// containerd POSTs its token form first; the token is a user key that
// either repository issues. Reads through the offline group still get
// Nexus's 503.
func TestOneNamePushWithTheGroupOffline(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneNameWithHosted()})
	st.Nexus.SetOnline("team-a", false)
	img := pushImage(t, st, st.Host("team-a")+"/grpoff/app:1")
	pullVerify(t, st, st.Host("team-a-push")+"/grpoff/app:1", img)
	cl := &http.Client{Transport: st.Transport()}
	form := url.Values{"grant_type": {"password"}, "username": {stack.User}, "password": {stack.Password},
		"client_id": {"containerd-client"}, "service": {"x"}, "scope": {"repository:grpoff/app:pull,push"}}
	resp, err := cl.PostForm("https://"+st.Host("team-a")+"/v2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := resp.StatusCode; s != 400 && s != 401 && s != 404 && s != 405 && s != 200 {
		t.Errorf("token POST: %d, containerd falls back to GET only after 400, 401, 404 or 405", s)
	}
	// Nexus's 503 page, as a Registry API error (errorpage.go).
	if _, err := remote.Image(ref(t, st.Host("team-a")+"/grpoff/app:1"), st.Remote(ctxT(t))...); err == nil || !strings.Contains(err.Error(), "UNAVAILABLE: Repository is offline") {
		t.Errorf("pull through the offline group: %v, want Nexus's 503", err)
	}
}

func TestOneNameViaLegacyPortWithCrane(t *testing.T) {
	port := freePort(t)
	cfg := oneName()
	cfg.Port = []string{fmt.Sprintf("%d=pull:team-a,push:team-a-hosted", port)}
	cfg.BindPorts = true
	st := stack.Start(t, stack.Options{Config: cfg})

	img, _ := random.Image(16<<10, 2)
	legacy := fmt.Sprintf("nexus.%s:%d/legacy/app:1", stack.Domain, port)
	opts := []crane.Option{crane.WithTransport(st.Transport()), crane.WithAuth(authBasic()), crane.WithContext(ctxT(t))}
	if err := crane.Push(img, legacy, opts...); err != nil {
		t.Fatalf("crane push via the legacy port: %v", err)
	}
	got, err := crane.Pull(legacy, opts...)
	if err != nil {
		t.Fatalf("crane pull via the legacy port: %v", err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		t.Fatalf("digest %s, want %s", gd, wd)
	}
	// The same image under the team's SNI name: one repository pair.
	pullVerify(t, st, st.Host("team-a")+"/legacy/app:1", img)
	// crane copy between the two names of the team.
	if err := crane.Copy(legacy, st.Host("team-a")+"/legacy/copy:1", opts...); err != nil {
		t.Fatalf("crane copy: %v", err)
	}
	pullVerify(t, st, st.Host("team-a")+"/legacy/copy:1", img)
}

func authBasic() authn.Authenticator {
	return &authn.Basic{Username: stack.User, Password: stack.Password}
}

// A port route wins over SNI: legacy clients name the repository by port,
// whatever name (possibly another team's route) they put in SNI and Host.
func TestPortRouteWinsOverSNI(t *testing.T) {
	port := freePort(t)
	cfg := teamRoutes()
	cfg.Port = []string{fmt.Sprintf("%d=team-a", port)}
	cfg.BindPorts = true
	st := stack.Start(t, stack.Options{Config: cfg})
	cl := &http.Client{Transport: st.Transport()}
	for _, host := range []string{"team-b", "team-a", "unknown"} {
		st.Nexus.ResetRequests()
		resp, err := cl.Get(fmt.Sprintf("https://%s.%s:%d/v2/", host, stack.Domain, port))
		if err != nil {
			t.Fatalf("SNI %s on the team-a port: %v", host, err)
		}
		resp.Body.Close()
		reqs := st.Nexus.Requests()
		if len(reqs) != 1 || reqs[0].Repo != "team-a" {
			t.Fatalf("SNI %s on the team-a port reached %+v, want team-a", host, reqs)
		}
	}
	// The same names on the SNI port keep their own routes.
	st.Nexus.ResetRequests()
	if code := get(st, "team-b", "/v2/"); code != http.StatusUnauthorized {
		t.Fatalf("team-b on the SNI port: %d", code)
	}
	if reqs := st.Nexus.Requests(); len(reqs) != 1 || reqs[0].Repo != "team-b" {
		t.Fatalf("team-b on the SNI port reached %+v", reqs)
	}
}

// Behind a TLS-ending load balancer a plain-HTTP port route hands back
// https URLs (--plain-http-scheme https): the client spoke https to the
// balancer, and an http realm would make docker's token call fail.
func TestPlainHTTPPortRouteBehindTLSBalancer(t *testing.T) {
	for _, scheme := range []string{"", "https"} {
		port := freePort(t)
		cfg := teamRoutes()
		cfg.Port = []string{fmt.Sprintf("%d=team-a", port)}
		cfg.BindPorts = true
		cfg.PlainHTTPScheme = scheme
		st := stack.Start(t, stack.Options{Config: cfg})
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v2/", port))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := "http"
		if scheme == "https" {
			want = "https"
		}
		realm := fmt.Sprintf(`realm="%s://127.0.0.1:%d/v2/token"`, want, port)
		if got := resp.Header.Get("Www-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(got, realm) {
			t.Fatalf("scheme %q: %d %q, want 401 with %s", scheme, resp.StatusCode, got, realm)
		}
		reqs := st.Nexus.Requests()
		if got := reqs[len(reqs)-1].Header.Get("X-Forwarded-Proto"); got != want {
			t.Fatalf("scheme %q: Nexus saw X-Forwarded-Proto %q", scheme, got)
		}
	}
}

// TestOneNamePicksOnTheDecodedPath: Jetty decodes the path, so
// "blob%73", "upload%73" and "toke%6e" are a blob, an upload session and
// the token endpoint to Nexus. The split route must pick the repository
// for what Nexus will serve: a Basic blob HEAD and an upload's status ask
// the hosted repository, a push-scoped token GET is a push token.
func TestOneNamePicksOnTheDecodedPath(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneName()})
	base, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Only the proxy member holds it: the group says it exists, hosted not.
	if err := st.Nexus.Seed("team-a-proxy", "library/base", "1", base); err != nil {
		t.Fatal(err)
	}
	layers, _ := base.Layers()
	ld, _ := layers[0].Digest()
	cl := &http.Client{Transport: st.Transport()}
	raw := func(method, path, query string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, "https://"+st.Host("team-a"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// Opaque keeps the path bytes exactly as written.
		req.URL.Opaque = "//" + st.Host("team-a") + path
		req.URL.RawQuery = query
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	only := func(what, wantRepo string) {
		t.Helper()
		reqs := st.Nexus.Requests()
		if len(reqs) == 0 {
			t.Errorf("%s: no request reached Nexus", what)
		}
		for _, r := range reqs {
			if r.Repo != wantRepo {
				t.Errorf("%s: %s %s went to %s, want %s", what, r.Method, r.RawPath, r.Repo, wantRepo)
			}
		}
	}

	st.Nexus.ResetRequests()
	if resp, _ := raw("HEAD", "/v2/library/base/blob%73/"+ld.String(), ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD blob%%73 (Basic): %d, want hosted's 404", resp.StatusCode)
	}
	only("HEAD blob%73", "team-a-hosted")

	resp, body := raw("POST", "/v2/enc/app/blobs/uploads/", "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %d %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	st.Nexus.ResetRequests()
	encoded := strings.Replace(loc.EscapedPath(), "/blobs/uploads/", "/blobs/upload%73/", 1)
	if resp, body := raw("GET", encoded, loc.RawQuery); resp.StatusCode != http.StatusNoContent {
		t.Errorf("GET %s: %d %.200s, want the session's 204", encoded, resp.StatusCode, body)
	}
	only("upload status", "team-a-hosted")

	st.Nexus.ResetRequests()
	resp, body = raw("GET", "/v2/toke%6e", "scope=repository%3Aenc%2Fapp%3Apull%2Cpush&service=x")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, ".nexmux-push") {
		t.Errorf("push-scoped GET /v2/toke%%6e: %d %.200s, want a marked push token", resp.StatusCode, body)
	}
	only("push token", "team-a-hosted")
}
