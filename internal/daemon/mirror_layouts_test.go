package daemon_test

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
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
