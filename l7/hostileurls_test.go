package l7

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// A URL Nexus hands back (upload or manifest Location, paging Link, token
// realm) that names another repository, Nexus's own address or another host
// must never reach the client as it is: followed, it would go past nexmux
// to another team's repository or Nexus's REST API, send the client's layer
// or credentials elsewhere, or reach around its route. What the client gets
// either resolves onto the public name (where nexmux confines it) or is
// left out. The one exception is a redirect of a blob read to a host that
// is not Nexus: an S3 blob store's pre-signed URL, passed byte for byte.
func TestHostileURLsNeverLeaveTheRoute(t *testing.T) {
	type answer struct {
		status        int
		header, value string
	}
	var give atomic.Pointer[answer]
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		a := give.Load()
		w.Header().Set(a.header, a.value)
		if a.status == http.StatusUnauthorized {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(a.status)
	})
	addr, _ := haProxy(t, io.Discard, 0, node)
	nx := "http://" + node.addr
	const (
		public  = "http://team-a.example.com"
		digest  = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
		s3      = "https://nexus-blobs.s3.eu-west-1.amazonaws.com/content/4f53.bytes?X-Amz-Signature=deadbeef"
		uploads = "/v2/app/blobs/uploads/"
	)
	minio := "http://" + strings.Split(node.addr, ":")[0] + ":9000/nexus-blobs/4f53.bytes?X-Amz-Signature=deadbeef"
	for _, c := range []struct {
		method, path string
		answer
		keep string // the value the client must get unchanged ("": it must resolve onto the public name)
	}{
		// Upload and manifest Locations.
		{http.MethodPost, uploads, answer{http.StatusAccepted, "Location", nx + "/repository/team-b/v2/app/blobs/uploads/u1?_state=x"}, ""},
		{http.MethodPost, uploads, answer{http.StatusAccepted, "Location", nx + "/service/rest/v1/repositories"}, ""},
		{http.MethodPost, uploads, answer{http.StatusAccepted, "Location", "https://evil.example.com/v2/app/blobs/uploads/u1"}, ""},
		{http.MethodPost, uploads, answer{http.StatusAccepted, "Location", "https://evil.example.com/upload/u1"}, ""},
		{http.MethodPost, uploads, answer{http.StatusAccepted, "Location", "//" + node.addr + "/v2/app/blobs/uploads/u1"}, ""},
		{http.MethodPost, uploads, answer{http.StatusAccepted, "Location", "//evil.example.com/v2/app/blobs/uploads/u1"}, ""},
		{http.MethodPut, "/v2/app/manifests/1", answer{http.StatusCreated, "Location", "https://evil.example.com/repository/team-a/v2/app/manifests/" + digest}, ""},
		// Paging Link.
		{http.MethodGet, "/v2/app/tags/list?n=1", answer{http.StatusOK, "Link", "<" + nx + `/repository/team-b/v2/app/tags/list?n=1&last=a>; rel="next"`}, ""},
		{http.MethodGet, "/v2/_catalog?n=1", answer{http.StatusOK, "Link", `<https://evil.example.com/v2/_catalog?n=1&last=a>; rel="next"`}, ""},
		// Token realm: the client sends its credentials there.
		{http.MethodGet, "/v2/", answer{http.StatusUnauthorized, "Www-Authenticate", `Bearer realm="` + nx + `/repository/team-b/v2/token",service="x"`}, ""},
		{http.MethodGet, "/v2/", answer{http.StatusUnauthorized, "Www-Authenticate", `Bearer realm="https://evil.example.com/token",service="x"`}, ""},
		{http.MethodHead, "/v2/app/manifests/1", answer{http.StatusUnauthorized, "Www-Authenticate", `Bearer realm="` + nx + `/service/rest/v1/token"`}, ""},
		// Redirects: to Nexus itself (any repository) they resolve onto
		// the public name; a manifest or token is never sent elsewhere.
		{http.MethodGet, "/v2/app/blobs/" + digest, answer{http.StatusTemporaryRedirect, "Location", nx + "/repository/team-b/v2/app/blobs/" + digest}, ""},
		{http.MethodGet, "/v2/app/blobs/" + digest, answer{http.StatusTemporaryRedirect, "Location", nx + "/repository/team-a/v2/app/blobs/" + digest}, ""},
		{http.MethodGet, "/v2/app/manifests/1", answer{http.StatusFound, "Location", "https://evil.example.com/v2/app/manifests/" + digest}, ""},
		{http.MethodGet, "/v2/app/manifests/1", answer{http.StatusFound, "Location", "https://evil.example.com/x"}, ""},
		// A blob read's redirect to Nexus's own address (its host and
		// port) is Nexus, whatever the path: no blob store shares its port.
		{http.MethodGet, "/v2/app/blobs/" + digest, answer{http.StatusTemporaryRedirect, "Location", nx + "/"}, ""},
		{http.MethodGet, "/v2/app/blobs/" + digest, answer{http.StatusTemporaryRedirect, "Location", nx + "/static/rapture/app.js"}, ""},
		{http.MethodHead, "/v2/app/blobs/" + digest, answer{http.StatusFound, "Location", "//" + node.addr + "/nexus-blobs/4f53.bytes"}, ""},
		// A blob store's pre-signed URL, beside Nexus or elsewhere.
		{http.MethodGet, "/v2/app/blobs/" + digest, answer{http.StatusTemporaryRedirect, "Location", s3}, s3},
		{http.MethodGet, "/v2/app/blobs/" + digest, answer{http.StatusTemporaryRedirect, "Location", minio}, minio},
	} {
		give.Store(&c.answer)
		resp, _ := send(t, addr, c.method, c.path, nil)
		name := c.method + " " + c.path + " answered " + c.header + " " + c.value
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, c.status)
		}
		got := resp.Header.Values(c.header)
		if c.keep != "" {
			if len(got) != 1 || got[0] != c.keep {
				t.Errorf("%s: client got %q, want it unchanged", name, got)
			}
			continue
		}
		for _, v := range got {
			var us []string
			switch c.header {
			case "Location":
				us = []string{v}
			case "Link":
				mapLinkURLs(v, func(u string) string { us = append(us, u); return u })
			default:
				if want := `realm="` + public + `/v2/token"`; !strings.Contains(v, want) {
					t.Errorf("%s: client got challenge %q, want %s", name, v, want)
				}
				continue
			}
			for _, u := range us {
				base, _ := url.Parse(public + c.path)
				ref, err := url.Parse(u)
				if err != nil {
					t.Errorf("%s: client got %q: %v", name, u, err)
					continue
				}
				if abs := base.ResolveReference(ref); abs.Scheme != "http" || abs.Host != "team-a.example.com" {
					t.Errorf("%s: client got %q, which leads to %s://%s", name, u, abs.Scheme, abs.Host)
				}
			}
		}
	}
}
