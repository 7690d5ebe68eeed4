package l7

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// mirrorCase is one request on mirror.example.com and what must come of it.
type mirrorCase struct {
	path     string
	status   int
	code     string // JSON error code of a refusal
	nexus    string // path+query Nexus sees; "" = never reaches it
	registry string // the request's registry label
	link     string // the Link the client gets back; "" = not checked
}

// checkMirrorCases sends each case as a GET without credentials and checks
// the answer, what reached Nexus (with the --mirror-auth-file credentials)
// and the registry label.
func checkMirrorCases(t *testing.T, mirror string, seen func() []seenRequest, registries <-chan string, cases []mirrorCase) {
	t.Helper()
	const mirrorAuth = "Basic bWlycm9yOnNlY3JldA=="
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodGet, "http://"+mirror+c.path, nil)
		req.Host = "mirror.example.com"
		resp, body := sendRequest(t, req)
		got := seen()
		select {
		case reg := <-registries:
			if reg != c.registry {
				t.Errorf("%s: registry label %q, want %q", c.path, reg, c.registry)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no access record", c.path)
		}
		if resp.StatusCode != c.status || c.code != "" && !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", c.path, resp.StatusCode, strings.TrimSpace(body), c.status, c.code)
		}
		if c.link != "" && resp.Header.Get("Link") != c.link {
			t.Errorf("%s: Link %q, want %q", c.path, resp.Header.Get("Link"), c.link)
		}
		switch {
		case c.nexus == "" && len(got) != 0:
			t.Errorf("%s reached Nexus as %+v", c.path, got)
		case c.nexus == "":
		case len(got) != 1:
			t.Errorf("%s: Nexus saw %+v, want one request", c.path, got)
		default:
			pq := got[0].path
			if got[0].query != "" {
				pq += "?" + got[0].query
			}
			if pq != c.nexus || got[0].auth != mirrorAuth {
				t.Errorf("%s reached Nexus as %s with Authorization %q, want %s with the mirror's", c.path, pq, got[0].auth, c.nexus)
			}
		}
	}
}

// TestMirrorContainerdHostPathWithoutOverridePath: the hosts.toml an
// operator writes first for one registry,
//
//	server = "https://quay.io"
//	[host."https://mirror.example.com/quay.io"]
//
// has a path and no override_path, so containerd appends /v2 to it
// (core/remotes/docker/config/hosts.go:440-446, parseHostConfig), joins
// the image name after it (core/remotes/docker/resolver.go:598) and adds
// ?ns= as the host is not the image's registry (resolver.go:647,
// registry.go:85 isProxy): /quay.io/v2/acme/tool/manifests/1?ns=quay.io.
// A first segment naming a registry before /v2/ is no /v2/<name> route
// and no [ctx]/repository/<repo> URL, so it maps onto that registry's
// repository without ambiguity, as the path prefix /v2/quay.io/ does;
// Link comes back in the same form. A registry this name does not mirror
// is unknown (404, containerd moves on to its next host: resolver.go:352).
func TestMirrorContainerdHostPathWithoutOverridePath(t *testing.T) {
	mirror, _, seen, registries := mirrorProxyFor(t, "mirror.example.com/ghcr.io=ghcr-proxy", "mirror.example.com/quay.io=quay-proxy",
		"mirror.example.com/docker.io=dockerhub-proxy")
	const blob = "sha256:d8873082705dc7be26a96db1fdc7499064264c70039901d62f101e7e5f99e4aa"
	checkMirrorCases(t, mirror, seen, registries, []mirrorCase{
		{path: "/quay.io/v2/acme/tool/manifests/1?ns=quay.io", status: 200, nexus: "/nexus/repository/quay-proxy/v2/acme/tool/manifests/1", registry: "quay.io"},
		{path: "/quay.io/v2/acme/tool/blobs/" + blob + "?ns=quay.io", status: 200, nexus: "/nexus/repository/quay-proxy/v2/acme/tool/blobs/" + blob, registry: "quay.io"},
		{path: "/ghcr.io/v2/acme/app/referrers/" + blob + "?ns=ghcr.io", status: 200, nexus: "/nexus/repository/ghcr-proxy/v2/acme/app/referrers/" + blob, registry: "ghcr.io"},
		// Written with the registry's port, as an image may name it.
		{path: "/ghcr.io:443/v2/acme/app/manifests/1?ns=ghcr.io%3A443", status: 200, nexus: "/nexus/repository/ghcr-proxy/v2/acme/app/manifests/1", registry: "ghcr.io"},
		// Docker Hub's hosts.toml (server = "https://registry-1.docker.io").
		{path: "/docker.io/v2/library/alpine/manifests/3?ns=docker.io", status: 200, nexus: "/nexus/repository/dockerhub-proxy/v2/library/alpine/manifests/3", registry: "docker.io"},
		{path: "/quay.io/v2/acme/tool/tags/list?n=2&ns=quay.io", status: 200, nexus: "/nexus/repository/quay-proxy/v2/acme/tool/tags/list?n=2", registry: "quay.io",
			link: `<http://mirror.example.com/quay.io/v2/acme/tool/tags/list?n=2&last=b&ns=quay.io>; rel="next"`},
		// ns names the registry of the image: a host path naming another
		// disagrees, as a path prefix does.
		{path: "/ghcr.io/v2/acme/app/manifests/1?ns=quay.io", status: 400, code: "NAME_INVALID"},
		// Not mirrored here: unknown, never another registry's image.
		{path: "/gcr.io/v2/acme/app/manifests/1?ns=gcr.io", status: 404, code: "NAME_UNKNOWN"},
		// The same endpoints as by /v2/: no _catalog, no upload sessions.
		{path: "/ghcr.io/v2/_catalog", status: 404, code: "NOT_FOUND"},
		{path: "/ghcr.io/v2/acme/app/blobs/uploads/x?ns=ghcr.io", status: 404, code: "NOT_FOUND"},
		// Not a registry first: still outside the registry API.
		{path: "/some/v2/acme/app/manifests/1", status: 404, code: "NOT_FOUND"},
	})
}

// TestMirrorNSDockerHubLocalhostNamespace: containerd pulling the Docker Hub
// image docker.io/localhost/app:1 (CRI reads it with distribution/reference
// ParseDockerRef; normalize.go:163-171 keeps docker.io as the registry and
// localhost/app as the name, a lowercase namespace Docker Hub's account
// rules allow) through a mirror without a path sends the name as it is
// (resolver.go:566, base: the locator minus the registry) with ns=docker.io:
// /v2/localhost/app/manifests/1?ns=docker.io. localhost is a registry host
// only as an image reference's first component; after ns=docker.io it is
// the Hub namespace the client named, so the pull goes to the docker.io
// repository.
func TestMirrorNSDockerHubLocalhostNamespace(t *testing.T) {
	mirror, _, seen, registries := mirrorProxyFor(t, "mirror.example.com/docker.io=dockerhub-proxy", "mirror.example.com/ghcr.io=ghcr-proxy")
	checkMirrorCases(t, mirror, seen, registries, []mirrorCase{
		{path: "/v2/localhost/app/manifests/1?ns=docker.io", status: 200, nexus: "/nexus/repository/dockerhub-proxy/v2/localhost/app/manifests/1", registry: "docker.io"},
		{path: "/v2/localhost/app/manifests/1?ns=index.docker.io", status: 200, nexus: "/nexus/repository/dockerhub-proxy/v2/localhost/app/manifests/1", registry: "docker.io"},
		// A registry host with a port or a dot is never a Hub namespace.
		{path: "/v2/localhost:5000/app/manifests/1?ns=docker.io", status: 400, code: "NAME_INVALID"},
		{path: "/v2/gcr.io/app/manifests/1?ns=docker.io", status: 400, code: "NAME_INVALID"},
	})
}

// TestMirrorDockerHubOfficialImageWithoutLibrary: a client naming the
// mirror itself, docker pull mirror.example.com/docker.io/alpine, sends
// /v2/docker.io/alpine/manifests/latest: distribution/reference adds
// library/ to a one-component name on docker.io only
// (normalize.go:182-188), and here the image's registry is the mirror.
// Docker Hub has no one-component repository (its registry answers 404
// for /v2/alpine/...): the docker.io repository must be asked for
// library/alpine, the name every other client sends (docker's
// registry-mirrors, containers/image's prefix rewrite in
// sysregistriesv2/system_registries_v2.go:106 of the normalized
// docker.io/library/alpine, CRI's ParseDockerRef). Names of other
// registries, of two components, and Nexus's own URL form stay as sent.
func TestMirrorDockerHubOfficialImageWithoutLibrary(t *testing.T) {
	mirror, _, seen, registries := mirrorProxyFor(t, "mirror.example.com/docker.io=dockerhub-proxy", "mirror.example.com/quay.io=quay-proxy")
	const blob = "sha256:d8873082705dc7be26a96db1fdc7499064264c70039901d62f101e7e5f99e4aa"
	const hub = "/nexus/repository/dockerhub-proxy/v2/library/alpine"
	checkMirrorCases(t, mirror, seen, registries, []mirrorCase{
		{path: "/v2/docker.io/alpine/manifests/latest", status: 200, nexus: hub + "/manifests/latest", registry: "docker.io"},
		{path: "/v2/docker.io/alpine/blobs/" + blob, status: 200, nexus: hub + "/blobs/" + blob, registry: "docker.io"},
		{path: "/v2/alpine/manifests/3", status: 200, nexus: hub + "/manifests/3", registry: "docker.io"},
		{path: "/v2/alpine/manifests/3?ns=docker.io", status: 200, nexus: hub + "/manifests/3", registry: "docker.io"},
		{path: "/docker.io/v2/alpine/manifests/3?ns=docker.io", status: 200, nexus: hub + "/manifests/3", registry: "docker.io"},
		{path: "/v2/docker.io/alpine/tags/list?n=2", status: 200, nexus: hub + "/tags/list?n=2", registry: "docker.io",
			link: `<http://mirror.example.com/v2/docker.io/library/alpine/tags/list?n=2&last=b>; rel="next"`},
		// An image called "blobs": one component all the same.
		{path: "/v2/docker.io/blobs/manifests/1", status: 200, nexus: "/nexus/repository/dockerhub-proxy/v2/library/blobs/manifests/1", registry: "docker.io"},
		{path: "/v2/docker.io/library/alpine/manifests/3", status: 200, nexus: hub + "/manifests/3", registry: "docker.io"},
		{path: "/v2/acme/app/manifests/1", status: 200, nexus: "/nexus/repository/dockerhub-proxy/v2/acme/app/manifests/1", registry: "docker.io"},
		{path: "/v2/quay.io/tool/manifests/1", status: 200, nexus: "/nexus/repository/quay-proxy/v2/tool/manifests/1", registry: "quay.io"},
		{path: "/nexus/repository/dockerhub-proxy/v2/alpine/manifests/3", status: 200, nexus: "/nexus/repository/dockerhub-proxy/v2/alpine/manifests/3", registry: "docker.io"},
	})
}
