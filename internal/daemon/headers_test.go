package daemon_test

import (
	"net/http"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// Identity and URL-override headers, headers with "_" and the --strip-header
// names never reach Nexus; ordinary headers still do.
func TestIdentityHeadersNeverReachNexus(t *testing.T) {
	cfg := teamRoutes()
	cfg.StripHeader = []string{"x-sso-user"}
	st := stack.Start(t, stack.Options{Config: cfg})
	cl := &http.Client{Transport: st.Transport()}
	dropped := []string{
		"X-Remote-User", "Remote-User", "X-Original-URL", "X-Rewrite-URL", "True-Client-IP",
		"X-Client-IP", "X-ProxyUser-IP", "X-Forwarded-User", "X-Real-IP", "X_Remote_User",
		"Remote_User", "X-SSO-User",
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/", nil)
	for _, h := range dropped {
		req.Header[h] = []string{"admin"} // as sent, not canonicalised
	}
	req.Header.Set("X-Keep-Me", "yes")
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := st.Nexus.Requests()
	if len(reqs) == 0 {
		t.Fatal("Nexus saw no request")
	}
	h := reqs[len(reqs)-1].Header
	for _, k := range dropped {
		if v, ok := h[http.CanonicalHeaderKey(k)]; ok {
			t.Errorf("%s reached Nexus: %q", k, v)
		}
		if v, ok := h[k]; ok {
			t.Errorf("%s reached Nexus: %q", k, v)
		}
	}
	if h.Get("X-Keep-Me") != "yes" || h.Get("Authorization") == "" {
		t.Errorf("ordinary headers lost: %v", h)
	}
}
