package daemon_test

import (
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
