package daemon_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// An upload follow-up whose credentials Nexus refuses gets Nexus's 401
// challenge whether its tag led to the node or nexmux had to ask the nodes
// (a tag from a replica with another key, or none): the nodes' 401 to the
// question says nothing of the session, and a 404 BLOB_UPLOAD_UNKNOWN
// would have the client start the layer over (or give up: crane) instead
// of logging in again.
func TestHAUploadAskedWithRefusedCredentialsIsUnauthorized(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	a2, _ := replica(t, st)
	trA, trB := viaReplica(st, st.Addr), viaReplica(st, a2)
	loc, _, _ := openUpload(t, st, trA)
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host == "" {
		u.Scheme, u.Host = "https", st.Host("team-a")
	}
	tag := u.Query().Get("_nexmux")
	withTag := func(tg string) string {
		v := *u
		v.RawQuery = "_nexmux=" + tg
		if tg == "" {
			v.RawQuery = ""
		}
		return v.String()
	}
	for _, c := range []struct{ name, url string }{
		{"valid tag", withTag(tag)},
		{"tampered tag", withTag("A" + tag[1:])},
		{"no tag", withTag("")},
	} {
		for _, auth := range []string{"wrong password", "unknown token", "none"} {
			for i, tr := range []http.RoundTripper{trA, trB} {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, c.url, strings.NewReader("chunk"))
				switch auth {
				case "wrong password":
					req.SetBasicAuth(stack.User, "not-"+stack.Password)
				case "unknown token":
					req.Header.Set("Authorization", "Bearer DockerToken.nope")
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("%s, %s, via replica %d: %v", c.name, auth, i, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s, %s, via replica %d: %s (WWW-Authenticate %q), want Nexus's 401 challenge",
						c.name, auth, i, resp.Status, resp.Header.Get("WWW-Authenticate"))
				}
			}
		}
	}
}
