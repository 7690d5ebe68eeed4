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
	refused["Accept"] = "application/vnd.oci.image.index.v1+json"
	r := nexusSees(t, refused)
	delete(refused, "Accept")
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

// The identity headers of the usual authenticating fronts (oauth2-proxy,
// Authelia, authentik, Pomerium, Google IAP, AWS ALB, Azure App Service,
// Cloudflare Access, Tailscale, Keycloak's gatekeeper) are what a Nexus
// Remote User Token realm is set to trust where such a front sits beside
// nexmux: passed on, any client could name any Nexus user. They used to
// reach Nexus (found by sending them through a live nexmux and reading
// what the fixture got).
func TestAuthFrontIdentityHeadersNeverReachNexus(t *testing.T) {
	refused := []string{
		"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Preferred-Username",
		"X-Auth-Request-Groups", "X-Auth-Request-Access-Token",
		"Remote-Email", "Remote-Groups", "Remote-Name",
		"X-Authentik-Username", "X-Authentik-Email", "X-Authentik-Groups",
		"X-Pomerium-Claim-Email", "X-Pomerium-Jwt-Assertion",
		"X-Goog-Authenticated-User-Email", "X-Goog-Authenticated-User-Id", "X-Goog-Iap-Jwt-Assertion",
		"X-Amzn-Oidc-Identity", "X-Amzn-Oidc-Data", "X-Amzn-Oidc-Accesstoken",
		"X-Ms-Client-Principal", "X-Ms-Client-Principal-Name", "X-Ms-Client-Principal-Id",
		"Cf-Access-Authenticated-User-Email", "Cf-Access-Jwt-Assertion",
		"Tailscale-User-Login", "Tailscale-User-Name",
		"X-Auth-Username", "X-Auth-Email", "X-Auth-Userid", "X-Auth-Subject",
		"X-Original-Host",
	}
	sent := map[string]string{"X-Auth-Keep": "yes"} // a prefix alone is not a name
	for _, k := range refused {
		sent[k] = "admin"
	}
	r := nexusSees(t, sent)
	for _, k := range refused {
		if v := r.Header.Values(k); len(v) > 0 {
			t.Errorf("%s reached Nexus: %q", k, v)
		}
	}
	if r.Header.Get("X-Auth-Keep") != "yes" {
		t.Errorf("ordinary header lost: %v", r.Header)
	}
}

// nexusSees sends a manifest GET with headers through a proxy and returns
// the request its Nexus node got.
func nexusSees(t *testing.T, headers map[string]string) *http.Request {
	t.Helper()
	got := make(chan *http.Request, 1)
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/repository/team-a/v2/app/manifests/1" {
			got <- r
		}
	})
	addr, _ := haProxy(t, io.Discard, 0, node)
	req := teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if resp, body := sendRequest(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	return <-got
}
