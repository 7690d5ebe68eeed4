package l7

import (
	"io"
	"net/http"
	"testing"
)

// Headers by which a client could make Nexus (Jetty, a Spring filter, a
// Remote User Token realm) see another method, another URL, another host
// or another user than the request nexmux judged never reach Nexus: a
// method override would turn a mirror's GET into a DELETE past its
// read-only check, a URL override would walk out of the route's
// repository. Ordinary headers still go through.
func TestClientCannotOverrideMethodURLOrIdentity(t *testing.T) {
	got := make(chan *http.Request, 1)
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/repository/team-a/v2/app/manifests/1" {
			got <- r
		}
	})
	addr, _ := haProxy(t, io.Discard, 0, node)
	refused := map[string]string{
		// another method
		"X-HTTP-Method-Override": "DELETE",
		"X-HTTP-Method":          "DELETE",
		"X-Method-Override":      "DELETE",
		// another URL or host
		"X-Original-URL": "/service/rest/v1/security/users",
		"X-Original-URI": "/service/rest/v1/security/users",
		"X-Rewrite-URL":  "/repository/team-b/v2/app/manifests/1",
		"X-Override-URL": "/repository/team-b/v2/app/manifests/1",
		"X-Host":         "nexus.internal",
		// another user, or a client certificate a front checked
		"X-Remote-User":        "admin",
		"Remote-User":          "admin",
		"X-Authenticated-User": "admin",
		"X-Auth-User":          "admin",
		"X-User":               "admin",
		"X-Username":           "admin",
		"X-Webauth-User":       "admin",
		"X-Forwarded-User":     "admin",
		"Proxy-Auth-Cert":      "MIIB",
		"Proxy-Ssl-Id":         "1",
		"X-Proxied-Https":      "on",
		// another client address
		"X-Real-IP":           "10.0.0.1",
		"X-Remote-Addr":       "10.0.0.1",
		"True-Client-IP":      "10.0.0.1",
		"X-Client-IP":         "10.0.0.1",
		"X-Cluster-Client-IP": "10.0.0.1",
		"X-ProxyUser-IP":      "10.0.0.1",
		"X-Originating-IP":    "10.0.0.1",
		"CF-Connecting-IP":    "10.0.0.1",
		"Fastly-Client-IP":    "10.0.0.1",
	}
	req := teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil)
	for k, v := range refused {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
	if resp, body := sendRequest(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	r := <-got
	if r.Method != http.MethodGet {
		t.Errorf("Nexus saw %s", r.Method)
	}
	for k := range refused {
		if v := r.Header.Values(k); len(v) > 0 {
			t.Errorf("%s reached Nexus: %q", k, v)
		}
	}
	if r.Header.Get("Accept") != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("Accept lost: %v", r.Header)
	}
}
