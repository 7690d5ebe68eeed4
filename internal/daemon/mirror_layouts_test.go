package daemon_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures"
)

// TestMirrorDockerHubLocalhostNamespace: the Docker Hub image
// docker.io/localhost/acme/app:1 (a namespace Docker Hub's account rules
// allow; distribution/reference normalize.go:163-171 keeps docker.io as
// its registry) pulled the way containerd pulls through a mirror without a
// path: the name as it is, ns=docker.io (core/remotes/docker/resolver.go:566
// and :647). It is the docker.io repository's image, not a request naming
// the registry localhost.
func TestMirrorDockerHubLocalhostNamespace(t *testing.T) {
	s := mirrorStack(t, true)
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Nexus.Seed("dockerhub-proxy", "localhost/acme/app", "1", img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	for _, ns := range []string{"docker.io", "index.docker.io"} {
		r, _ := name.ParseReference(mirrorHost + ":" + itoa(s.Port) + "/localhost/acme/app:1")
		pulled, err := remote.Image(r, remote.WithTransport(nsTransport{ns: ns, next: s.Transport()}), remote.WithAuth(authn.Anonymous))
		if err != nil {
			t.Errorf("pull with ns=%s: %v", ns, err)
			continue
		}
		if got, _ := pulled.Digest(); got != want {
			t.Errorf("pull with ns=%s: digest %s, want %s", ns, got, want)
		}
		if err := validate.Image(pulled); err != nil {
			t.Errorf("pull with ns=%s: %v", ns, err)
		}
	}
}

// TestMirrorDockerHubOfficialImageWithoutLibrary: docker pull
// mirror.example.com/docker.io/alpine:3 (or .../alpine:3) names the
// mirror as the image's registry, so the client adds no library/
// (distribution/reference normalize.go:182-188 does that on docker.io
// only) and sends /v2/docker.io/alpine/... . Docker Hub keeps official
// images under library/ and has no one-component repository: the pull
// must get library/alpine:3, the image every other client's name for it
// (docker.io/alpine) means, with each child manifest and blob.
func TestMirrorDockerHubOfficialImageWithoutLibrary(t *testing.T) {
	s := mirrorStack(t, true)
	n, tag, _ := strings.Cut(fixtures.MultiArchImage, ":")
	short := strings.TrimPrefix(n, "library/")
	want := seeded(t, s, "dockerhub-proxy", fixtures.MultiArchImage)
	host := mirrorHost + ":" + itoa(s.Port)
	for _, ref := range []string{host + "/docker.io/" + short + ":" + tag, host + "/" + short + ":" + tag} {
		r, _ := name.ParseReference(ref)
		idx, err := remote.Index(r, remote.WithTransport(s.Transport()), remote.WithAuth(authn.Anonymous))
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if got, _ := idx.Digest(); got.String() != want {
			t.Errorf("%s: digest %s, want %s", ref, got, want)
		}
		if err := validate.Index(idx); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
}

// TestMirrorDigestPulls: CRI-O with pull-from-mirror = "digest-only" (or
// mirror-by-digest-only) uses a mirror for a digest reference only,
// rewritten to the mirror's location by prefix
// (pkg/sysregistriesv2/system_registries_v2.go:106) and read as
// GET /v2/<location path>/<name>/manifests/<digest>
// (docker/docker_client.go:47, docker/docker_image_src.go:689); containerd
// resolves a digest reference the same way with ns. Each must get the image
// of that digest, children of an index included, in every form.
func TestMirrorDigestPulls(t *testing.T) {
	s := mirrorStack(t, true)
	host := mirrorHost + ":" + itoa(s.Port)
	hub := seeded(t, s, "dockerhub-proxy", fixtures.MultiArchImage)
	app := seeded(t, s, "ghcr-proxy", "acme/app:1")
	for _, c := range []struct {
		ref, ns string
		index   bool
	}{
		{host + "/ghcr.io/acme/app@" + app, "", false},
		{host + "/acme/app@" + app, "ghcr.io", false},
		{host + "/docker.io/library/alpine@" + hub, "", true},
		{host + "/docker.io/alpine@" + hub, "", true},
		{host + "/library/alpine@" + hub, "docker.io", true},
	} {
		var tr http.RoundTripper = s.Transport()
		if c.ns != "" {
			tr = nsTransport{ns: c.ns, next: tr}
		}
		r, err := name.NewDigest(c.ref)
		if err != nil {
			t.Fatal(err)
		}
		opts := []remote.Option{remote.WithTransport(tr), remote.WithAuth(authn.Anonymous)}
		if c.index {
			idx, err := remote.Index(r, opts...)
			if err == nil {
				err = validate.Index(idx)
			}
			if err != nil {
				t.Errorf("%s ns=%q: %v", c.ref, c.ns, err)
			}
			continue
		}
		img, err := remote.Image(r, opts...)
		if err == nil {
			err = validate.Image(img)
		}
		if err != nil {
			t.Errorf("%s ns=%q: %v", c.ref, c.ns, err)
		}
	}
}
