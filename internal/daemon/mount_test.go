package daemon_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// TestCrossTeamBlobMountRefused: a cross-repository mount
// (POST .../blobs/uploads/?mount=<digest>&from=<name>) names an image of
// the same registry, which is one Nexus repository: Nexus keeps a hosted
// repository's blobs per repository (v2/-/blobs/<digest>), so from= cannot
// reach another one, and nexmux sends the POST to team-a's push repository
// whatever from= says. A layer only team-b holds does not mount for
// team-a, in any spelling of from=: 202 (a fresh upload), and team-a's
// repository still lacks it.
func TestCrossTeamBlobMountRefused(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.Seed("team-b-hosted", "secret/app", "1", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	dg, _ := layers[0].Digest()
	d := url.QueryEscape(dg.String())
	for _, from := range []string{"secret/app", "team-b-hosted/secret/app", "repository/team-b-hosted/secret/app", "team-b", "..%2Fteam-b-hosted%2Fsecret%2Fapp"} {
		st.Nexus.ResetRequests()
		resp, body := teamDo(t, st, "POST", "/v2/mine/blobs/uploads/?mount="+d+"&from="+from)
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("mount from %s: %d %.200s, want 202 (no mount)", from, resp.StatusCode, body)
		}
		for _, r := range st.Nexus.Requests() {
			if r.Repo != "team-a-hosted" {
				t.Errorf("mount from %s: %s %s went to %s", from, r.Method, r.Path, r.Repo)
			}
		}
		if resp, _ := teamDo(t, st, "HEAD", "/repository/team-a-hosted/v2/mine/blobs/"+dg.String()); resp.StatusCode != http.StatusNotFound {
			t.Errorf("after mount from %s: team-a-hosted HEAD %d, want 404", from, resp.StatusCode)
		}
	}
	// The control: a layer team-a's push repository holds mounts (201),
	// and the HEAD above finds what is there.
	own, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.Seed("team-a-hosted", "mine/base", "1", own); err != nil {
		t.Fatal(err)
	}
	ownLayers, _ := own.Layers()
	od, _ := ownLayers[0].Digest()
	if resp, body := teamDo(t, st, "POST", "/v2/mine/blobs/uploads/?mount="+url.QueryEscape(od.String())+"&from=mine/base"); resp.StatusCode != http.StatusCreated {
		t.Errorf("mount of team-a's own layer: %d %.200s, want 201", resp.StatusCode, body)
	}
	if resp, _ := teamDo(t, st, "HEAD", "/repository/team-a-hosted/v2/mine/blobs/"+od.String()); resp.StatusCode != http.StatusOK {
		t.Errorf("team-a-hosted HEAD of its own layer: %d, want 200", resp.StatusCode)
	}
}

// teamDo sends one request, with Basic credentials, to team-a's name.
func teamDo(t *testing.T, st *stack.Stack, method, target string) (*http.Response, string) {
	t.Helper()
	return do(t, st.Transport(), method, "https://team-a.nexmux.test:"+itoa(st.Port)+target, nil)
}
