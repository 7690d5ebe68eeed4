package l7

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// What registryError makes of the answers Nexus (or Jetty, or a front)
// sends: text and HTML error pages become one Registry API error; JSON,
// other types, successes and redirects pass untouched.
func TestRegistryErrorFromPages(t *testing.T) {
	long := strings.Repeat("word ", 100)
	for _, c := range []struct {
		method, ctype, enc, body string
		status                   int
		code, msg                string // "" code: untouched
	}{
		{"GET", "text/plain; charset=utf-8", "", "404 page not found\n", 404, "NAME_UNKNOWN", "404 page not found"},
		{"GET", "text/plain", "", "Repository is offline\n", 503, "UNAVAILABLE", "Repository is offline"},
		{"GET", "TEXT/HTML;charset=iso-8859-1", "", "<html><head><title>\n 500 &amp; Server\tError </title></head><body>x</body></html>", 500, "UNAVAILABLE", "500 & Server Error"},
		{"GET", "text/html", "", "<html><body><h1>Forbidden</h1><p>Routing rules &lt;block&gt; it</p></body></html>", 403, "DENIED", "Forbidden Routing rules <block> it"},
		{"GET", "text/plain", "", "caf\xe9 \x00ferm\xe9", 429, "TOOMANYREQUESTS", "caf? ferm?"},
		{"GET", "text/plain", "", long, 400, "UNSUPPORTED", strings.TrimSpace(long)[:200] + "... (499 bytes)"},
		{"GET", "text/plain", "", "", 405, "UNSUPPORTED", "Method Not Allowed"},
		{"GET", "text/plain", "gzip", "\x1f\x8b...", 401, "UNAUTHORIZED", "Unauthorized"},
		{"HEAD", "text/html", "", "", 404, "NAME_UNKNOWN", "Not Found"},
		// untouched
		{"GET", "application/json", "", `{"errors":[]}`, 404, "", ""},
		{"GET", "", "", "oops", 500, "", ""},
		{"GET", "application/octet-stream", "", "oops", 500, "", ""},
		{"GET", "text/plain", "", "ok", 200, "", ""},
		{"GET", "text/html", "", "<a href=x>moved</a>", 302, "", ""},
	} {
		resp := &http.Response{
			StatusCode: c.status,
			Header:     http.Header{},
			Body:       io.NopCloser(strings.NewReader(c.body)),
			Request:    &http.Request{Method: c.method},
		}
		if c.ctype != "" {
			resp.Header.Set("Content-Type", c.ctype)
		}
		if c.enc != "" {
			resp.Header.Set("Content-Encoding", c.enc)
		}
		registryError(resp)
		b, _ := io.ReadAll(resp.Body)
		if c.code == "" {
			if string(b) != c.body || resp.Header.Get("Content-Type") != c.ctype {
				t.Errorf("%d %s %q: became %q %q", c.status, c.ctype, c.body, resp.Header.Get("Content-Type"), b)
			}
			continue
		}
		want := ErrorBody(c.code, c.msg)
		if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Length") != strconv.Itoa(len(want)) {
			t.Errorf("%d %s %q: headers %v", c.status, c.ctype, c.body, resp.Header)
		}
		// As on nexmux's own errors: the answer is a Registry API error.
		if v := resp.Header.Get("Docker-Distribution-Api-Version"); v != "registry/2.0" {
			t.Errorf("%d %s %q: Docker-Distribution-Api-Version %q, want registry/2.0", c.status, c.ctype, c.body, v)
		}
		if c.method == http.MethodHead {
			if len(b) != 0 {
				t.Errorf("HEAD: body %q", b)
			}
			continue
		}
		var e struct {
			Errors []struct{ Code, Message string }
		}
		if string(b) != string(want) || json.Unmarshal(b, &e) != nil {
			t.Errorf("%d %s %q:\n got %s\nwant %s", c.status, c.ctype, c.body, b, want)
		}
	}
}
