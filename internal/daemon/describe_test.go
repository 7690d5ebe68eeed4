package daemon_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// describeQueries ask Nexus's repository servlet for a description of the
// request (every header, Authorization included) instead of the answer, in
// the forms Jetty decodes to the parameter name "describe".
var describeQueries = []string{
	"describe=json",
	"describe",
	"n=1&describe=html",
	"%64escribe=json",
	"%64%65%73%63%72%69%62%65=json",
	"%u0064escribe=json",
}

// TestMirrorDescribeKeepsAuthFileSecret: an anonymous client of a mirror
// name must not get Nexus to describe a request nexmux added the
// --mirror-auth-file credentials to: the description would hand it the
// mirror user's password.
func TestMirrorDescribeKeepsAuthFileSecret(t *testing.T) {
	s := mirrorStack(t, true)
	secret := base64.StdEncoding.EncodeToString([]byte(stack.User + ":" + stack.Password))
	for _, q := range describeQueries {
		for _, target := range []string{"/v2/library/alpine/manifests/3?" + q, "/v2/ghcr.io/acme/app/tags/list?" + q,
			"/repository/quay-proxy/v2/acme/tool/manifests/2?" + q, "/v2/?" + q, "/v2/acme/app/manifests/1?ns=ghcr.io&" + q} {
			path, q, _ := strings.Cut(target, "?")
			s.Nexus.ResetRequests()
			resp, body := mirrorGet(t, s, "GET", target, false)
			if strings.Contains(body, secret) || strings.Contains(body, stack.Password) {
				t.Errorf("GET %s?%s: %d, the answer holds the --mirror-auth-file credentials: %.300s", path, q, resp.StatusCode, body)
				continue
			}
			if resp.StatusCode != 400 || !strings.Contains(body, `"code":"UNSUPPORTED"`) {
				t.Errorf("GET %s?%s: %d %.200s, want nexmux's 400 UNSUPPORTED", path, q, resp.StatusCode, body)
			}
			if reqs := s.Nexus.Requests(); len(reqs) != 0 {
				t.Errorf("GET %s?%s reached Nexus", path, q)
			}
		}
	}
	// Parameters that only look like it still go through.
	for _, q := range []string{"last=describe", "describer=1", "x=%64escribe"} {
		if resp, body := mirrorGet(t, s, "GET", "/v2/library/alpine/tags/list?"+q, false); resp.StatusCode != 200 {
			t.Errorf("GET tags/list?%s: %d %.200s, want 200", q, resp.StatusCode, body)
		}
	}
}
