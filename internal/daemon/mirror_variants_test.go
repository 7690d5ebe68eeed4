package daemon_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// TestMirrorInEveryNexusVariant: the version-dependent answers of Nexus
// (context path, the three Location/Link shapes, force basic auth, the
// null:// base behind a front that drops the proto and sends
// X-Forwarded-Host with a port, anonymous access) on a mirror name. Each
// client form (containerd's ?ns=, the CRI-O/skopeo path prefix, docker's
// registry-mirrors with neither) must HEAD then GET the multi-arch index
// with the clients' Accept list, pull every child and blob, and page tags
// through Link; the challenge a client sees must name the mirror.
func TestMirrorInEveryNexusVariant(t *testing.T) {
	forceBasic := fixtures.MirrorRepos("")
	for i := range forceBasic {
		forceBasic[i].ForceBasicAuth = true
	}
	cases := []struct {
		name     string
		fixture  fixtures.Config
		authFile bool // --mirror-auth-file; else the client logs in (or not, anonymous)
		anon     bool // Nexus allows anonymous reads; the client sends nothing
		front    func(in, out *http.Request)
		// challenge is what a client without credentials must be told
		// (when it is told anything): "" for the public Bearer realm.
		challenge string
	}{
		{name: "ctx /nexus, absolute URLs", fixture: fixtures.Config{ContextPath: "/nexus", LocationStyle: fixtures.LocationAbsolute}, authFile: true},
		{name: "relative URLs with prefix", fixture: fixtures.Config{LocationStyle: fixtures.LocationRelativePrefix}, authFile: true},
		{name: "ctx /nexus, relative URLs, login", fixture: fixtures.Config{ContextPath: "/nexus", LocationStyle: fixtures.LocationRelativePrefix}},
		{name: "force basic auth, login", fixture: fixtures.Config{Repos: forceBasic, LocationStyle: fixtures.LocationAbsolute},
			challenge: `BASIC realm="Sonatype Nexus Repository Manager"`},
		{name: "null scheme behind a front, login", fixture: fixtures.Config{LocationStyle: fixtures.LocationAbsolute, NullSchemeWithoutProto: true},
			front: func(in, out *http.Request) {
				out.Header.Del("X-Forwarded-Proto")
				out.Header.Set("X-Forwarded-Host", in.Host)
			}},
		{name: "anonymous access, no auth file", fixture: fixtures.Config{Anonymous: true, LocationStyle: fixtures.LocationAbsolute}, anon: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Config{}
			for _, m := range fixtures.Mirrors {
				cfg.Mirror = append(cfg.Mirror, mirrorHost+"/"+m.Remote+"="+m.Repo)
			}
			if c.authFile {
				f := filepath.Join(t.TempDir(), "mirror-auth")
				if err := os.WriteFile(f, []byte(stack.User+":"+stack.Password+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg.MirrorAuthFile = f
			}
			fc := c.fixture
			if fc.Repos == nil {
				fc.Repos = fixtures.MirrorRepos("")
			}
			o := stack.Options{Config: cfg, Fixture: fc}
			if c.front != nil {
				o.Upstreams = func(nexusURL string) []string { return []string{forwardingFront(t, nexusURL, c.front)} }
			}
			s := stack.Start(t, o)
			if err := s.Nexus.SeedMirrors(); err != nil {
				t.Fatal(err)
			}
			host := mirrorHost + ":" + itoa(s.Port)
			var auth authn.Authenticator = authn.Anonymous
			if !c.authFile && !c.anon {
				auth = &authn.Basic{Username: stack.User, Password: stack.Password}
				resp, _ := mirrorGet(t, s, http.MethodGet, "/v2/acme/app/manifests/1?ns=ghcr.io", false)
				want := c.challenge
				if want == "" {
					want = `Bearer realm="https://` + host + `/v2/token"`
				}
				if got := resp.Header.Get("Www-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(got, want) {
					t.Errorf("challenge without credentials: %d %q, want 401 %s", resp.StatusCode, got, want)
				}
			}

			for _, f := range []struct {
				form, ref string
				ns        string // containerd's ?ns=
				hostPath  bool   // a hosts.toml host https://mirror/<ns> without override_path
			}{
				{"ns", host + "/" + fixtures.MultiArchImage, "docker.io", false},
				{"prefix", host + "/docker.io/" + fixtures.MultiArchImage, "", false},
				{"registry-mirrors", host + "/" + fixtures.MultiArchImage, "", false},
				{"ns, ghcr.io", host + "/acme/app:1", "ghcr.io", false},
				{"prefix, ghcr.io", host + "/ghcr.io/acme/app:1", "", false},
				{"host path", host + "/" + fixtures.MultiArchImage, "docker.io", true},
				{"host path, ghcr.io", host + "/acme/app:1", "ghcr.io", true},
			} {
				var tr http.RoundTripper = s.Transport()
				if f.ns != "" {
					tr = nsTransport{ns: f.ns, next: tr}
				}
				if f.hostPath {
					tr = hostPathTransport{registry: f.ns, next: tr}
				}
				opts := []remote.Option{remote.WithTransport(tr), remote.WithAuth(auth), remote.WithContext(ctxT(t))}
				ref, err := name.ParseReference(f.ref)
				if err != nil {
					t.Fatal(err)
				}
				repo := "dockerhub-proxy"
				if strings.Contains(f.form, "ghcr.io") {
					repo = "ghcr-proxy"
				}
				n, tag, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(f.ref, host+"/"), "docker.io/"), ":")
				n = strings.TrimPrefix(n, "ghcr.io/")
				sd, ok := s.Nexus.Seeded(repo, n, tag)
				if !ok {
					t.Fatalf("%s:%s not seeded in %s", n, tag, repo)
				}
				// HEAD (containerd's resolve), then GET, with every media
				// type go-containerregistry accepts, the OCI index among them.
				d, err := remote.Head(ref, opts...)
				if err != nil || d.Digest != sd.Digest {
					t.Errorf("%s: HEAD %s: %v %v, want %s", f.form, f.ref, d, err, sd.Digest)
					continue
				}
				desc, err := remote.Get(ref, opts...)
				if err != nil || desc.Digest != sd.Digest {
					t.Errorf("%s: GET %s: %v, want %s", f.form, f.ref, err, sd.Digest)
					continue
				}
				if desc.MediaType.IsIndex() {
					idx, err := desc.ImageIndex()
					if err == nil {
						err = validate.Index(idx)
					}
					if err != nil {
						t.Errorf("%s: index %s: %v", f.form, f.ref, err)
					}
				} else {
					img, err := desc.Image()
					if err == nil {
						err = validate.Image(img)
					}
					if err != nil {
						t.Errorf("%s: image %s: %v", f.form, f.ref, err)
					}
				}
				if repo != "dockerhub-proxy" {
					continue
				}
				// Tags page through Link in the client's form.
				tags, err := remote.List(ref.Context(), append(opts, remote.WithPageSize(5))...)
				if err != nil || len(tags) != fixtures.PagedTags+1 {
					t.Errorf("%s: tags of %s through Link: %d %v, want %d", f.form, f.ref, len(tags), err, fixtures.PagedTags+1)
				}
			}

			// Nexus's own URL form (with its context path) keeps that form
			// in the Link it hands back.
			own := fc.ContextPath + "/repository/dockerhub-proxy/v2/library/alpine/tags/list"
			resp, body := mirrorGet(t, s, http.MethodGet, own+"?n=5", !c.authFile && !c.anon)
			if l := resp.Header.Get("Link"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(l, "<https://"+host+own+"?") {
				t.Errorf("%s?n=5: %d Link %q %s, want a next page at %s", own, resp.StatusCode, l, body, own)
			}
		})
	}
}

// hostPathTransport sends requests the way containerd does to a hosts.toml
// host "https://mirror/<registry>" without override_path: /v2 appended to
// the host's path (core/remotes/docker/config/hosts.go, parseHostConfig),
// so /<registry>/v2/...; the token realm is an absolute URL of its own.
type hostPathTransport struct {
	registry string
	next     http.RoundTripper
}

func (t hostPathTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if p := r.URL.Path; strings.HasPrefix(p, "/v2/") && !strings.HasSuffix(p, "/v2/token") {
		r = r.Clone(r.Context())
		r.URL.Path = "/" + t.registry + p
		r.URL.RawPath = ""
	}
	return t.next.RoundTrip(r)
}

// TestMirrorBlobRedirectAndAcceptLines: an S3 blob store's redirect (3.79+,
// Pro) on a proxy repository reaches a mirror client as Nexus sent it, in
// every client form (no ns or prefix added to a URL that is not ours) and
// unfollowed; and the Accept lines a client resolves with (docker sends one
// per media type, the OCI index among them) reach Nexus as sent.
func TestMirrorBlobRedirectAndAcceptLines(t *testing.T) {
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[string][]byte{}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		blobs[d.String()] = b
	}
	cfgName, _ := img.ConfigName()
	blobs[cfgName.String()], _ = img.RawConfigFile()
	var hits atomic.Int64
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := blobs[strings.TrimPrefix(r.URL.Path, "/content/")]
		if !ok || r.URL.Query().Get("X-Amz-Signature") != "deadbeef" {
			http.Error(w, "no such key", http.StatusForbidden)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s3.Close)
	// A name: go-containerregistry refuses redirects to private addresses.
	s3Base := strings.Replace(s3.URL, "127.0.0.1", "nexus-blobs.s3.example.com", 1)
	presigned := func(digest string) string {
		return s3Base + "/content/" + digest + "?X-Amz-Credential=AKIA%2F20250101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=deadbeef"
	}
	auth := filepath.Join(t.TempDir(), "mirror-auth")
	writeFile(t, auth, stack.User+":"+stack.Password+"\n")
	cfg := config.Config{MirrorAuthFile: auth}
	for _, m := range fixtures.Mirrors {
		cfg.Mirror = append(cfg.Mirror, mirrorHost+"/"+m.Remote+"="+m.Repo)
	}
	s := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{
		Repos: fixtures.MirrorRepos(""), ContextPath: "/nexus", LocationStyle: fixtures.LocationAbsolute,
		BlobRedirect: func(repo, digest string) string {
			if _, ok := blobs[digest]; ok && repo == "ghcr-proxy" {
				return presigned(digest)
			}
			return ""
		},
	}})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	if err := s.Nexus.Seed("ghcr-proxy", "s3/app", "1", img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	host := mirrorHost + ":" + itoa(s.Port)
	d := layers[0]
	ld, _ := d.Digest()
	for _, c := range []struct {
		ref  string
		ns   string
		path string // the blob GET in the same form
	}{
		{host + "/s3/app:1", "ghcr.io", "/v2/s3/app/blobs/" + ld.String() + "?ns=ghcr.io"},
		{host + "/ghcr.io/s3/app:1", "", "/v2/ghcr.io/s3/app/blobs/" + ld.String()},
		{"", "", "/nexus/repository/ghcr-proxy/v2/s3/app/blobs/" + ld.String()},
	} {
		before := hits.Load()
		resp, body := mirrorGet(t, s, http.MethodGet, c.path, false)
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != presigned(ld.String()) {
			t.Errorf("GET %s: %d Location %q %s, want 307 to the pre-signed URL as Nexus sent it", c.path, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if hits.Load() != before {
			t.Errorf("GET %s: nexmux followed the redirect", c.path)
		}
		if c.ref == "" {
			continue
		}
		var tr http.RoundTripper = s.Transport()
		if c.ns != "" {
			tr = nsTransport{ns: c.ns, next: tr}
		}
		got, err := remote.Image(ref(t, c.ref), remote.WithTransport(tr), remote.WithAuth(authn.Anonymous), remote.WithContext(ctxT(t)))
		if err == nil {
			err = validate.Image(got)
		}
		if err != nil {
			t.Errorf("pull %s (ns %q) with blobs on S3: %v", c.ref, c.ns, err)
		} else if gd, _ := got.Digest(); gd != want {
			t.Errorf("pull %s: digest %s, want %s", c.ref, gd, want)
		}
	}
	if hits.Load() == 0 {
		t.Error("no blob was fetched from S3")
	}

	// docker's Accept lines, and containerd's one comma list.
	accepts := [][]string{
		{"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
			"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"},
		{"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*"},
	}
	sd, _ := s.Nexus.Seeded("dockerhub-proxy", "library/alpine", "3")
	for _, acc := range accepts {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			s.Nexus.ResetRequests()
			req, _ := http.NewRequest(method, "https://"+host+"/v2/library/alpine/manifests/3?ns=docker.io", nil)
			req.Header["Accept"] = acc
			resp, err := (&http.Client{Transport: s.Transport()}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != sd.Digest.String() {
				t.Errorf("%s index with Accept %q: %d %s, want 200 %s", method, acc, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), sd.Digest)
			}
			reqs := s.Nexus.Requests()
			if len(reqs) != 1 || !slices.Equal(reqs[0].Header["Accept"], acc) {
				t.Errorf("%s: Accept reached Nexus as %v, want %q", method, reqs, acc)
			}
		}
	}
}

// TestMirrorPingAndTokenSurviveAnOfflineDefault: /v2/ and the token name no
// registry and go to the name's docker.io repository. Taken offline (503),
// or gone (404: renamed, deleted), it must not fail the pulls of every
// other registry on the name (crane, skopeo and docker ping /v2/ first;
// containerd's token POST, then GET); its own pulls still get Nexus's 503.
func TestMirrorPingAndTokenSurviveAnOfflineDefault(t *testing.T) {
	for _, c := range []struct {
		name     string
		authFile bool
		gone     bool // docker.io's repository does not exist
		nodes    int
	}{
		{name: "offline, login"},
		{name: "offline, auth file", authFile: true},
		{name: "offline, login, HA", nodes: 2},
		{name: "gone, login", gone: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config.Config{}
			for _, m := range fixtures.Mirrors {
				repo := m.Repo
				if c.gone && m.Remote == "docker.io" {
					repo = "dockerhub-renamed"
				}
				cfg.Mirror = append(cfg.Mirror, mirrorHost+"/"+m.Remote+"="+repo)
			}
			if c.authFile {
				f := filepath.Join(t.TempDir(), "mirror-auth")
				writeFile(t, f, stack.User+":"+stack.Password+"\n")
				cfg.MirrorAuthFile = f
			}
			s := stack.Start(t, stack.Options{Config: cfg, Nodes: c.nodes, Fixture: fixtures.Config{Repos: fixtures.MirrorRepos("")}})
			if err := s.Nexus.SeedMirrors(); err != nil {
				t.Fatal(err)
			}
			s.Nexus.SetOnline("dockerhub-proxy", false)
			host := mirrorHost + ":" + itoa(s.Port)
			var auth authn.Authenticator = &authn.Basic{Username: stack.User, Password: stack.Password}
			if c.authFile {
				auth = authn.Anonymous
			}
			for _, m := range fixtures.Mirrors[1:] {
				sd, _ := s.Nexus.Seeded(m.Repo, strings.Split(m.Image, ":")[0], strings.Split(m.Image, ":")[1])
				for _, f := range []struct{ ref, ns string }{{host + "/" + m.Remote + "/" + m.Image, ""}, {host + "/" + m.Image, m.Remote}} {
					var tr http.RoundTripper = s.Transport()
					if f.ns != "" {
						tr = nsTransport{ns: f.ns, next: tr}
					}
					d, err := remote.Head(ref(t, f.ref), remote.WithTransport(tr), remote.WithAuth(auth), remote.WithContext(ctxT(t)))
					if err != nil || d.Digest != sd.Digest {
						t.Errorf("%s (ns %q) with docker.io's repository unavailable: %v %v, want %s", f.ref, f.ns, d, err, sd.Digest)
					}
				}
			}
			// containerd: the OAuth2 POST first (refused: it falls back),
			// then GET with Basic; the token reads another registry.
			cl := &http.Client{Transport: s.Transport()}
			form := url.Values{"grant_type": {"password"}, "username": {stack.User}, "password": {stack.Password},
				"client_id": {"containerd-client"}, "service": {"x"}, "scope": {"repository:acme/app:pull"}}
			resp, err := cl.PostForm("https://"+host+"/v2/token", form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if s := resp.StatusCode; s != 400 && s != 401 && s != 404 && s != 405 && s != 200 {
				t.Errorf("token POST: %d, containerd falls back to GET only after 400, 401, 404 or 405", s)
			}
			tokResp, body := mirrorGet(t, s, http.MethodGet, "/v2/token?service=x&scope=repository%3Aacme%2Fapp%3Apull", true)
			var tok struct{ Token string }
			if err := json.Unmarshal([]byte(body), &tok); tokResp.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("token GET: %d %s", tokResp.StatusCode, body)
			}
			req, _ := http.NewRequest(http.MethodHead, "https://"+host+"/v2/acme/app/manifests/1?ns=ghcr.io", nil)
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			if resp, err := cl.Do(req); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("ghcr.io read with that token: %v %v", resp, err)
			}
			// docker.io's own pulls get Nexus's answer for that repository.
			resp, body = mirrorGet(t, s, http.MethodGet, "/v2/library/alpine/manifests/3", true)
			if want := map[bool]int{false: 503, true: 404}[c.gone]; resp.StatusCode != want {
				t.Errorf("docker.io pull: %d %s, want %d", resp.StatusCode, body, want)
			}
		})
	}
}

// TestMirrorHostPortRegistryByNS: a registry with a port has no prefix form
// in skopeo, CRI-O, podman or crane; containerd reaches it by ?ns= (":"
// encoded as url.Values does, or not), and a pull reads its repository.
func TestMirrorHostPortRegistryByNS(t *testing.T) {
	auth := filepath.Join(t.TempDir(), "mirror-auth")
	writeFile(t, auth, stack.User+":"+stack.Password+"\n")
	cfg := config.Config{MirrorAuthFile: auth, Mirror: []string{
		mirrorHost + "/docker.io=dockerhub-proxy",
		mirrorHost + "/registry.corp.test:5000=corp-proxy",
	}}
	repos := append(fixtures.MirrorRepos(""), fixtures.Repo{Name: "corp-proxy", Type: fixtures.Proxy, Online: true, RemoteURL: "https://registry.corp.test:5000"})
	s := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{Repos: repos}})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(1024, 2)
	if err := s.Nexus.Seed("corp-proxy", "team/tool", "7", img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	host := mirrorHost + ":" + itoa(s.Port)
	tr := nsTransport{ns: "registry.corp.test:5000", next: s.Transport()}
	got, err := remote.Image(ref(t, host+"/team/tool:7"), remote.WithTransport(tr), remote.WithAuth(authn.Anonymous), remote.WithContext(ctxT(t)))
	if err == nil {
		err = validate.Image(got)
	}
	if err != nil {
		t.Fatalf("pull by ns=registry.corp.test%%3A5000: %v", err)
	}
	if gd, _ := got.Digest(); gd != want {
		t.Errorf("pull by ns: digest %s, want %s", gd, want)
	}
	resp, body := mirrorGet(t, s, http.MethodHead, "/v2/team/tool/manifests/7?ns=registry.corp.test:5000", false)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != want.String() {
		t.Errorf("HEAD with ns=registry.corp.test:5000 unencoded: %d %s", resp.StatusCode, body)
	}
}
