package discover_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/internal/discover"
	"github.com/nexmux/nexmux/route"
)

// TestDiscoverMirrors: docker proxy repositories become ready --mirror
// lines keyed by their remote's registry; a second proxy of one registry is
// left out with a note.
func TestDiscoverMirrors(t *testing.T) {
	repos := append(fixtures.MirrorRepos("mirrors"),
		fixtures.Repo{Name: "zz-hub-again", Type: fixtures.Proxy, Online: true, RemoteURL: "https://index.docker.io/"},
		fixtures.Repo{Name: "corp-proxy", Type: fixtures.Proxy, Online: true, RemoteURL: "https://registry.corp.test:5000"},
		// Credentials written into a remote URL stay out of the output.
		fixtures.Repo{Name: "zz-quay-again", Type: fixtures.Proxy, Online: true, RemoteURL: "https://robot:s3cret@quay.io/"},
		fixtures.Repo{Name: "corp2-proxy", Type: fixtures.Proxy, Online: true, RemoteURL: "https://robot:s3cret@registry.corp2.test"},
		fixtures.Repo{Name: "zz-bad-remote", Type: fixtures.Proxy, Online: true, RemoteURL: "https://robot:s3cret@/x"},
		fixtures.Repo{Name: "zz-bad-url", Type: fixtures.Proxy, Online: true, RemoteURL: "https://robot:s3cret@quay.io:bad/"})
	plan := planFrom(t, "example.org", repos)
	want := []string{"registry.corp.test:5000=corp-proxy", "registry.corp2.test=corp2-proxy", "docker.io=dockerhub-proxy", "ghcr.io=ghcr-proxy", "registry.k8s.io=k8s-proxy", "quay.io=quay-proxy"}
	if strings.Join(plan.Mirrors, " ") != strings.Join(want, " ") {
		t.Errorf("mirrors %q, want %q", plan.Mirrors, want)
	}
	fl := plan.Flags()
	for _, w := range []string{"--mirror 'mirror.example.org/ghcr.io=ghcr-proxy'", "ghcr-proxy: proxy of ghcr.io (https://ghcr.io)", "zz-hub-again: docker.io is already mirrored by dockerhub-proxy",
		"zz-quay-again: quay.io is already mirrored by quay-proxy", "corp2-proxy: proxy of registry.corp2.test (https://xxxxx@registry.corp2.test)", `zz-bad-remote: remote "https://xxxxx@/x" names no registry host`,
		`zz-bad-url: remote "https://xxxxx@quay.io:bad/" names no registry host`} {
		if !strings.Contains(fl, w) {
			t.Errorf("flags lack %q:\n%s", w, fl)
		}
	}
	if strings.Contains(fl+plan.YAML(), "s3cret") || strings.Contains(fl+plan.YAML(), "robot") {
		t.Errorf("a remote URL's password in the output:\n%s\n%s", fl, plan.YAML())
	}
	// The YAML's mirror list builds a valid table.
	var f struct {
		Mirror []string `yaml:"mirror"`
	}
	if err := yaml.Unmarshal([]byte(plan.YAML()), &f); err != nil {
		t.Fatal(err)
	}
	tab, err := route.Build(route.Spec{Mirrors: f.Mirror})
	if err != nil || tab.LookupHost("mirror.example.org") == nil || len(tab.LookupHost("mirror.example.org").Mirror.Registries) != 6 {
		t.Errorf("discovered mirrors do not build: %v", err)
	}
}

// TestDiscoverMirrorHostTakenByARepository: with --domain, a repository
// named "mirror" already has mirror.<domain>; the mirror lines, which
// could not share it, are left out with a note, so the mapping builds.
func TestDiscoverMirrorHostTakenByARepository(t *testing.T) {
	repos := []discover.Repo{
		{Name: "Mirror", Format: "docker", Type: "hosted"},
		{Name: "hub", Format: "docker", Type: "proxy", Proxy: &struct {
			RemoteURL string `json:"remoteUrl"`
		}{"https://registry-1.docker.io"}},
	}
	plan, err := discover.MakePlan(repos, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := route.Build(route.Spec{Routes: plan.Routes, Mirrors: mirrorSpecs(plan)}); err != nil {
		t.Errorf("discovered mapping does not build: %v\n%s", err, plan.Flags())
	}
	if fl := plan.Flags(); !strings.Contains(fl, "mirror.example.org is the host name of repository Mirror") {
		t.Errorf("no note on the left-out mirror lines:\n%s", fl)
	}
}

func mirrorSpecs(p *discover.Plan) []string {
	var out []string
	for _, m := range p.Mirrors {
		out = append(out, p.MirrorHost+"/"+m)
	}
	return out
}

// A proxy whose remote has a path (another Nexus's or an Artifactory's
// repository: https://nexus-b.corp/repository/docker-hosted/) is not a
// registry root: clients never pull "nexus-b.corp/<image>", so a mirror
// keyed by that host would name a registry nobody uses, and would shadow a
// proxy of the host's real root. It gets a note, not a --mirror line.
func TestDiscoverMirrorNotForARemoteWithAPath(t *testing.T) {
	plan := planFrom(t, "example.org", []fixtures.Repo{
		{Name: "b-hosted", Type: fixtures.Proxy, Online: true, RemoteURL: "https://nexus-b.corp/repository/docker-hosted/"},
		{Name: "hub", Type: fixtures.Proxy, Online: true, RemoteURL: "https://registry-1.docker.io/"},
		{Name: "quay", Type: fixtures.Proxy, Online: true, RemoteURL: "https://quay.io/v2/"},
	})
	if got := strings.Join(plan.Mirrors, " "); got != "docker.io=hub quay.io=quay" {
		t.Errorf("mirrors %q, want none for the remote with a path", plan.Mirrors)
	}
	if fl := plan.Flags(); !strings.Contains(fl, "b-hosted: remote") {
		t.Errorf("no note for the remote with a path:\n%s", fl)
	}
}

// TestDiscoverMirrorRemoteSecretsWithoutScheme: a remote URL written
// without its scheme ("robot:s3cret@quay.io" parses with the scheme
// "robot", the password in its opaque part) or with a token in its query
// shows neither in the notes: discover's output goes into files, tickets
// and CI logs.
func TestDiscoverMirrorRemoteSecretsWithoutScheme(t *testing.T) {
	repos := append(fixtures.MirrorRepos("mirrors"),
		fixtures.Repo{Name: "zz-no-scheme", Type: fixtures.Proxy, Online: true, RemoteURL: "robot:s3cret@registry.corp3.test"},
		fixtures.Repo{Name: "zz-half-scheme", Type: fixtures.Proxy, Online: true, RemoteURL: "https:robot:s3cret@registry.corp4.test"},
		fixtures.Repo{Name: "zz-token", Type: fixtures.Proxy, Online: true, RemoteURL: "https://registry.corp5.test/v2/?token=s3cret"})
	plan := planFrom(t, "example.org", repos)
	out := plan.Flags() + plan.YAML()
	if strings.Contains(out, "s3cret") {
		t.Errorf("a remote URL's secret in the output:\n%s", out)
	}
	for _, w := range []string{"zz-no-scheme:", "registry.corp3.test", "zz-half-scheme:", "registry.corp4.test", "zz-token:", "registry.corp5.test"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}
