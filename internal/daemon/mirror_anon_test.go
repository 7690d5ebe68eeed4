package daemon_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures"
)

// TestMirrorAnonymousNexus: with no --mirror-auth-file and Nexus's
// anonymous reads on, mirror clients pull with no credentials through
// Nexus's own flow: the version check is challenged, the client takes an
// anonymous token at the public realm, and reads with it, in the prefix
// form (skopeo, CRI-O), the ns form (containerd) and docker's default.
func TestMirrorAnonymousNexus(t *testing.T) {
	s := mirrorStack(t, false)
	s.Nexus.SetAnonymous(true)
	opts := []crane.Option{crane.WithTransport(s.Transport()), crane.WithAuth(authn.Anonymous), crane.WithContext(context.Background())}
	host := mirrorHost + ":" + itoa(s.Port)
	resp, _ := mirrorGet(t, s, http.MethodGet, "/v2/", false)
	if want := `Bearer realm="https://` + host + `/v2/token"`; resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Www-Authenticate"), want) {
		t.Fatalf("anonymous version check: %d %q, want 401 %s", resp.StatusCode, resp.Header.Get("Www-Authenticate"), want)
	}
	for _, m := range fixtures.Mirrors {
		want := seeded(t, s, m.Repo, m.Image)
		if got, err := crane.Digest(host+"/"+m.Remote+"/"+m.Image, opts...); err != nil || got != want {
			t.Errorf("prefix %s/%s: digest %s err %v, want %s", m.Remote, m.Image, got, err, want)
		}
		n, tag, _ := strings.Cut(m.Image, ":")
		resp, _ := mirrorGet(t, s, http.MethodHead, "/v2/"+n+"/manifests/"+tag+"?ns="+m.Remote, false)
		if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want {
			t.Errorf("ns=%s %s: %d %s, want %s", m.Remote, m.Image, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), want)
		}
	}
	want := seeded(t, s, "dockerhub-proxy", fixtures.ProbeImage)
	if got, err := crane.Digest(host+"/"+fixtures.ProbeImage, opts...); err != nil || got != want {
		t.Errorf("default docker.io probe: %s %v, want %s", got, err, want)
	}
	img, err := crane.Pull(host+"/ghcr.io/acme/app:1", opts...)
	if err == nil {
		err = validate.Image(img) // every blob fetched and checked
	}
	if err != nil {
		t.Errorf("full pull through the prefix form: %v", err)
	}
}
