package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Only a Location on nexmux's own upload path gets the _nexmux tag: one
// Nexus gave relative, or on the request's own host. One on another host
// (a blob store, anyone) never reaches the client (rewrite.go), tagged or
// not, unless it names the route's own upload path.
func TestTagOnlyOwnUploadLocations(t *testing.T) {
	cases := []struct {
		loc, want string // want: "" = tagged, "-" = no Location, else the Location unchanged
	}{
		{"/repository/team-a/v2/app/blobs/uploads/u1", ""},
		{"http://team-a.example.com/repository/team-a/v2/app/blobs/uploads/u2?x=1", ""},
		{"//evil.example.com/v2/app/blobs/uploads/u4", ""},
		{"https://s3.example.com/bucket/v2/app/blobs/uploads/u3?sig=abc", "-"},
		{"ftp://team-a.example.com/v2/app/blobs/uploads/u5", "-"},
		{"/repository/team-b/v2/app/blobs/uploads/u6", "/repository/team-b/v2/app/blobs/uploads/u6"},
	}
	for _, c := range cases {
		h := func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/repository/") {
				w.Header().Set("Location", c.loc)
				w.WriteHeader(http.StatusAccepted)
			}
		}
		addr, _ := haProxy(t, io.Discard, 0, startNode(t, h), startNode(t, h))
		resp, _ := send(t, addr, http.MethodPost, "/v2/app/blobs/uploads/", nil)
		got := resp.Header.Get("Location")
		tagged := strings.Contains(got, "_nexmux=")
		switch {
		case c.want == "" && !tagged:
			t.Errorf("%s: not tagged: %s", c.loc, got)
		case c.want == "-" && resp.Header.Values("Location") != nil:
			t.Errorf("%s: became %s", c.loc, got)
		case c.want != "" && c.want != "-" && got != c.want:
			t.Errorf("%s: became %s", c.loc, got)
		}
	}
}
