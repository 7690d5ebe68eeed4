package daemon_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// oneNameWithHosted adds a name that reaches only the hosted repository, to
// prove what a push left there.
func oneNameWithHosted() config.Config {
	cfg := oneName()
	cfg.Route = append(cfg.Route, "team-a-push.nexmux.test=team-a-hosted")
	return cfg
}

// seedUpstreamIndex puts a multi-arch index (and its children and layers)
// into the group's proxy member only, as a proxy of Docker Hub would hold it.
func seedUpstreamIndex(t *testing.T, st *stack.Stack, image, tag string) v1.ImageIndex {
	t.Helper()
	idx, err := fixtures.MultiArchIndex(fixtures.MultiArchPlatforms...)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.SeedIndex("team-a-proxy", image, tag, idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// indexVerify pulls an index and every child and layer, verifying each
// digest, and compares the index digest.
func indexVerify(t *testing.T, st *stack.Stack, where string, want v1.ImageIndex) {
	t.Helper()
	got, err := remote.Index(ref(t, where), st.Remote(ctxT(t))...)
	if err != nil {
		t.Fatalf("pull %s: %v", where, err)
	}
	if err := validate.Index(got); err != nil {
		t.Fatalf("pull %s: content does not verify: %v", where, err)
	}
	gd, _ := got.Digest()
	wd, _ := want.Digest()
	if gd != wd {
		t.Fatalf("pull %s: digest %s, want %s", where, gd, wd)
	}
}

// hostedHoldsAll asserts through the hosted-only name that the hosted
// repository alone serves the index, every child manifest and every layer,
// and the fixture's log that those reads were answered by team-a-hosted.
func hostedHoldsAll(t *testing.T, st *stack.Stack, image string, want v1.ImageIndex) {
	t.Helper()
	st.Nexus.ResetRequests()
	indexVerify(t, st, st.Host("team-a-push")+"/"+image, want)
	n := 0
	for _, r := range st.Nexus.Requests() {
		nm, _, _ := strings.Cut(image, ":")
		if r.Method != http.MethodGet || !strings.Contains(r.Path, "/v2/"+nm+"/") {
			continue
		}
		n++
		if r.Repo != "team-a-hosted" || r.Status != http.StatusOK {
			t.Errorf("hosted read %s: %s answered %d", r.Path, r.Repo, r.Status)
		}
	}
	im, _ := want.IndexManifest()
	if min := 1 + len(im.Manifests); n < min {
		t.Errorf("only %d reads from the hosted repository, want at least %d", n, min)
	}
}

// TestOneNameCraneCopyMultiArchFromProxyMember: crane copies an index whose
// children and layers only the proxy member holds, to a new tag, to a new
// name (cross-repository mount attempt) and onto the upstream's own tag
// (re-push of an existing tag); every copy must land whole in hosted.
func TestOneNameCraneCopyMultiArchFromProxyMember(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneNameWithHosted()})
	idx := seedUpstreamIndex(t, st, "library/base", "3")
	opts := []crane.Option{crane.WithTransport(st.Transport()), crane.WithAuth(authBasic()), crane.WithContext(ctxT(t))}
	src := st.Host("team-a") + "/library/base:3"
	indexVerify(t, st, src, idx)
	// First a new name (crane asks hosted to mount each layer from
	// library/base, which only the proxy member holds), then a new tag, then
	// the upstream's own tag.
	for i, dst := range []string{"team/base:3", "library/base:mine", "library/base:3"} {
		st.Nexus.ResetRequests()
		if err := crane.Copy(src, st.Host("team-a")+"/"+dst, opts...); err != nil {
			t.Fatalf("crane copy %s -> %s: %v", src, dst, err)
		}
		// Every existence check of the push asked the hosted repository.
		for _, r := range st.Nexus.Requests() {
			if r.Method == http.MethodHead && strings.Contains(r.Path, "/"+strings.Split(dst, ":")[0]+"/") && r.Repo != "team-a-hosted" {
				t.Errorf("copy to %s: HEAD %s asked %s", dst, r.Path, r.Repo)
			}
		}
		if i == 0 {
			var mounts int
			for _, r := range st.Nexus.Requests() {
				if r.Method == http.MethodPost && strings.Contains(r.RawQuery, "mount=") {
					mounts++
					if r.Repo != "team-a-hosted" || !strings.Contains(r.RawQuery, "from=library%2Fbase") {
						t.Errorf("mount %s?%s went to %s", r.Path, r.RawQuery, r.Repo)
					}
				}
			}
			if mounts == 0 {
				t.Error("crane copy to a new name attempted no cross-repository mount")
			}
		}
		indexVerify(t, st, st.Host("team-a")+"/"+dst, idx)
		hostedHoldsAll(t, st, dst, idx)
	}
}

// TestOneNamePullSessionHeadBlobReadsGroup: containerd's FetchByDigest
// HEADs a blob while pulling; with a pull token that must get the group's
// answer, even for a layer only the proxy member holds.
func TestOneNamePullSessionHeadBlobReadsGroup(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneName()})
	idx := seedUpstreamIndex(t, st, "library/base", "3")
	im, _ := idx.IndexManifest()
	child, _ := idx.Image(im.Manifests[0].Digest)
	layers, _ := child.Layers()
	d, _ := layers[0].Digest()

	repo, err := name.NewRepository(st.Host("team-a") + "/library/base")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		action string
		status int
		repo   string
	}{
		{transport.PullScope, http.StatusOK, "team-a"},
		{transport.PushScope, http.StatusNotFound, "team-a-hosted"},
	} {
		tr, err := transport.NewWithContext(ctxT(t), repo.Registry, authBasic(), st.Transport(), []string{repo.Scope(tc.action)})
		if err != nil {
			t.Fatal(err)
		}
		st.Nexus.ResetRequests()
		req, _ := http.NewRequest(http.MethodHead, "https://"+st.Host("team-a")+"/v2/library/base/blobs/"+d.String(), nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s session: HEAD blob %d, want %d", tc.action, resp.StatusCode, tc.status)
		}
		var seen bool
		for _, r := range st.Nexus.Requests() {
			if r.Method == http.MethodHead {
				seen = true
				if r.Repo != tc.repo {
					t.Errorf("%s session: HEAD blob went to %s, want %s", tc.action, r.Repo, tc.repo)
				}
				if a := r.Header.Get("Authorization"); strings.Contains(a, "nexmux") {
					t.Errorf("Nexus saw the mark: %q", a)
				}
			}
		}
		if !seen {
			t.Errorf("%s session: no HEAD reached Nexus", tc.action)
		}
	}
}

// TestOneNameForceBasicAuth: with force-basic repositories no token shows a
// session, and nexmux keeps the method/path rule (blob HEADs to hosted,
// manifest HEADs to the group). A multi-arch copy from the proxy member to a
// new name still lands whole in hosted, and pulls read through the group.
func TestOneNameForceBasicAuth(t *testing.T) {
	repos := stack.TeamRepos("team-a", "team-b")
	for i := range repos {
		repos[i].ForceBasicAuth = true
	}
	st := stack.Start(t, stack.Options{Config: oneNameWithHosted(), Fixture: fixtures.Config{Repos: repos}})
	// The BASIC challenge reaches the client as Nexus wrote it: there is
	// no realm URL in it to rewrite, and docker logs in with Basic on it.
	resp, err := (&http.Client{Transport: st.Transport()}).Get("https://" + st.Host("team-a") + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("Www-Authenticate"); resp.StatusCode != http.StatusUnauthorized || len(got) != 1 || got[0] != `BASIC realm="Sonatype Nexus Repository Manager"` {
		t.Fatalf("anonymous GET /v2/: %d %q, want 401 with Nexus's BASIC challenge", resp.StatusCode, got)
	}
	idx := seedUpstreamIndex(t, st, "library/base", "3")
	opts := []crane.Option{crane.WithTransport(st.Transport()), crane.WithAuth(authBasic()), crane.WithContext(ctxT(t))}
	src := st.Host("team-a") + "/library/base:3"
	if err := crane.Copy(src, st.Host("team-a")+"/team/base:3", opts...); err != nil {
		t.Fatalf("crane copy with Basic auth: %v", err)
	}
	for _, r := range st.Nexus.Requests() {
		if strings.HasSuffix(r.Path, "/v2/token") {
			t.Errorf("a token was requested (%s %s): the repositories force Basic", r.Method, r.Path)
		}
		if a := r.Header.Get("Authorization"); a != "" && !strings.HasPrefix(a, "Basic ") {
			t.Errorf("%s %s carried %q", r.Method, r.Path, a)
		}
	}
	indexVerify(t, st, st.Host("team-a")+"/team/base:3", idx)
	hostedHoldsAll(t, st, "team/base:3", idx)
}

// TestOneNameContainerdTokenPOSTReadsGroup: containerd asks the realm with
// an OAuth2 form POST before every pull and falls back to GET only on
// 400/401/404/405. The POST is no write: with the hosted repository offline
// (pushes frozen) it must still get the group's 404, not hosted's 503, and
// the pull must go on.
func TestOneNameContainerdTokenPOSTReadsGroup(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneName()})
	idx := seedUpstreamIndex(t, st, "library/base", "3")
	st.Nexus.SetOnline("team-a-hosted", false)
	st.Nexus.ResetRequests()
	form := url.Values{
		"grant_type": {"password"}, "username": {stack.User}, "password": {stack.Password},
		"client_id": {"containerd-client"}, "service": {"x"}, "scope": {"repository:library/base:pull"},
	}
	resp, err := (&http.Client{Transport: st.Transport()}).PostForm("https://"+st.Host("team-a")+"/v2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("token POST: %d, want the group's 404 (containerd then falls back to GET)", resp.StatusCode)
	}
	for _, r := range st.Nexus.Requests() {
		if r.Repo != "team-a" {
			t.Errorf("%s %s went to %s, want the group", r.Method, r.Path, r.Repo)
		}
	}
	indexVerify(t, st, st.Host("team-a")+"/library/base:3", idx)
}

// TestOneNameCopyWithOneTokenForSourceAndDestination: oras cp asks one token
// for the source's pull and the destination's push (its scope hints), then
// resolves the source with HEAD and writes the destination with the same
// token. The token grants push on the destination only: the source's HEAD
// must read the group, which holds the upstream index in its proxy member,
// and the destination's existence checks must ask hosted, so that the
// index lands there whole.
func TestOneNameCopyWithOneTokenForSourceAndDestination(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneNameWithHosted()})
	idx := seedUpstreamIndex(t, st, "library/base", "3")
	src, dst := ref(t, st.Host("team-a")+"/library/base:3"), ref(t, st.Host("team-a")+"/team/base:3")
	scopes := []string{src.Context().Scope(transport.PullScope), dst.Context().Scope(transport.PushScope)}
	tr, err := transport.NewWithContext(ctxT(t), src.Context().Registry, authBasic(), st.Transport(), scopes)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{remote.WithTransport(tr), remote.WithContext(ctxT(t))}
	desc, err := remote.Head(src, opts...)
	if err != nil {
		t.Fatalf("resolving the source with the copy's token: %v", err)
	}
	wd, _ := idx.Digest()
	if desc.Digest != wd {
		t.Fatalf("source resolved to %s, want %s", desc.Digest, wd)
	}
	got, err := remote.Index(src.Context().Digest(desc.Digest.String()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(dst, got, opts...); err != nil {
		t.Fatalf("writing the copy with the same token: %v", err)
	}
	indexVerify(t, st, st.Host("team-a")+"/team/base:3", idx)
	hostedHoldsAll(t, st, "team/base:3", idx)
}
