package l7

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A node's answer whose headers run past upstreamMaxResponseHeaderBytes
// (broken or hostile: Jetty sends at most its 8 KiB responseHeaderSize) is
// refused with a Registry API error, not read into memory whole, per
// request, up to net/http's 10 MiB default. Headers far above Jetty's
// still pass.
func TestNexusHeadersAreBounded(t *testing.T) {
	for _, tc := range []struct {
		size int
		want int
	}{
		{64 << 10, http.StatusOK},
		{2 << 20, http.StatusBadGateway},
	} {
		a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/repository/") {
				w.Header().Set("X-Big", strings.Repeat("b", tc.size))
				w.Write([]byte("{}"))
			}
		})
		addr, _ := haProxy(t, io.Discard, 0, a)
		resp, body := sendRequest(t, teamRequest(addr, http.MethodGet, "/v2/app/tags/list", nil))
		if resp.StatusCode != tc.want {
			t.Fatalf("%d bytes of headers: %s; want %d", tc.size, resp.Status, tc.want)
		}
		if tc.want != http.StatusOK {
			var e struct{ Errors []struct{ Code string } }
			if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) != 1 {
				t.Fatalf("%d bytes of headers: body %.200q, want a Registry API error", tc.size, body)
			}
		}
	}
}
