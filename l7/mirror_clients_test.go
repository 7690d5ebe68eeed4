package l7

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMirrorContainerdReferrers: containerd 2.x asks a mirror for an
// image's referrers (core/remotes/docker/referrers.go, openReferrers:
// GET <name>/referrers/<digest>, artifactType added by addQuery at line
// 105, then ?ns= by addNamespace, resolver.go:647, which re-encodes the
// whole query with url.Values at line 640), and on a 404 falls back to the
// tag schema, GET <name>/manifests/sha256-<hex> (referrers.go:134). Both
// reach the registry's repository with the mirror's credentials; the
// filter reaches Nexus as sent and ns never does.
func TestMirrorContainerdReferrers(t *testing.T) {
	mirror, _, seen, registries := mirrorProxy(t)
	const (
		mirrorAuth = "Basic bWlycm9yOnNlY3JldA=="
		hex        = "aae08300f3fd44d0553a12b706314feace15ad68496bd9eb617dbe726a375df5"
		filter     = "artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson"
	)
	for _, c := range []struct{ path, nexus, registry string }{
		// hosts.toml _default: ns only.
		{"/v2/acme/app/referrers/sha256:" + hex + "?" + filter + "&ns=ghcr.io",
			"/nexus/repository/ghcr-proxy/v2/acme/app/referrers/sha256:" + hex + "?" + filter, "ghcr.io"},
		// override_path = true (host .../v2/quay.io): prefix and ns.
		{"/v2/quay.io/acme/tool/referrers/sha256:" + hex + "?" + filter + "&ns=quay.io",
			"/nexus/repository/quay-proxy/v2/acme/tool/referrers/sha256:" + hex + "?" + filter, "quay.io"},
		// The tag schema fallback: a manifest read, whose query is dropped.
		{"/v2/acme/tool/manifests/sha256-" + hex + "?ns=quay.io",
			"/nexus/repository/quay-proxy/v2/acme/tool/manifests/sha256-" + hex, "quay.io"},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+mirror+c.path, nil)
		req.Host = "mirror.example.com"
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, */*")
		resp, body := sendRequest(t, req)
		select {
		case reg := <-registries:
			if reg != c.registry {
				t.Errorf("%s: registry label %q, want %q", c.path, reg, c.registry)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no access record", c.path)
		}
		got := seen()
		if resp.StatusCode != http.StatusOK || len(got) != 1 {
			t.Errorf("%s: %d %s, Nexus saw %+v; want 200 from one request", c.path, resp.StatusCode, strings.TrimSpace(body), got)
			continue
		}
		pq := got[0].path
		if got[0].query != "" {
			pq += "?" + got[0].query
		}
		if pq != c.nexus || got[0].auth != mirrorAuth {
			t.Errorf("%s reached Nexus as %s with Authorization %q, want %s with the mirror's", c.path, pq, got[0].auth, c.nexus)
		}
	}
}

// TestMirrorBlobReadHeaders: the headers mirror clients fetch layers with
// reach Nexus unchanged on a mirror name: containerd's Accept-Encoding
// (core/remotes/docker/fetcher.go:470) and the open-ended Range of a
// resumed or parallel chunked fetch (resolver.go:946, setOffset), and the
// several ranges of containers/image's partial pulls
// (docker/docker_image_src.go:408, GetBlobAt), which it needs answered
// with a 206 or a whole 200, never cut to one range.
func TestMirrorBlobReadHeaders(t *testing.T) {
	mirror, _, seen, registries := mirrorProxy(t)
	const blob = "sha256:d8873082705dc7be26a96db1fdc7499064264c70039901d62f101e7e5f99e4aa"
	for _, c := range []struct {
		path   string
		header http.Header
	}{
		{"/v2/acme/app/blobs/" + blob + "?ns=ghcr.io", http.Header{
			"Accept":          {"application/vnd.oci.image.layer.v1.tar+gzip, */*"},
			"Accept-Encoding": {"zstd;q=1.0, gzip;q=0.8, deflate;q=0.5"},
			"Range":           {"bytes=1048576-"},
		}},
		{"/v2/quay.io/acme/tool/blobs/" + blob, http.Header{
			"Range": {"bytes=0-1023,4096-8191,65536-"},
		}},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+mirror+c.path, nil)
		req.Host = "mirror.example.com"
		for k, v := range c.header {
			req.Header[k] = v
		}
		sendRequest(t, req)
		select {
		case <-registries:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no access record", c.path)
		}
		got := seen()
		if len(got) != 1 {
			t.Fatalf("%s: Nexus saw %+v, want one request", c.path, got)
		}
		for k, v := range c.header {
			if !slices.Equal(got[0].header[k], v) {
				t.Errorf("%s: %s reached Nexus as %q, want %q", c.path, k, got[0].header[k], v)
			}
		}
	}
}
