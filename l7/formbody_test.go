package l7

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Jetty looks for a charset anywhere in Content-Type; only those that
// spell "describe" in ASCII bytes pass, so describeParam sees what Jetty
// decodes.
func TestFormCharsetsOK(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/x-www-form-urlencoded":                           true,
		"application/x-www-form-urlencoded; charset=UTF-8":            true,
		"application/x-www-form-urlencoded;charset=\"utf-8\"":         true,
		"application/x-www-form-urlencoded; charset=ISO-8859-1":       true,
		"application/x-www-form-urlencoded; charset=UTF-16":           false,
		"application/x-www-form-urlencoded; charset=IBM037":           false,
		"application/x-www-form-urlencoded; charset = utf-16le":       false,
		"application/x-www-form-urlencoded; x=\"charset=utf-16\"":     false,
		"application/x-www-form-urlencoded; charset=utf-8; charset=x": false,
		"application/x-www-form-urlencoded; charsets":                 true,
	} {
		h := http.Header{"Content-Type": {ct}}
		if got := formCharsetsOK(h); got != want {
			t.Errorf("formCharsetsOK(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestFormEncoded(t *testing.T) {
	for _, c := range []struct {
		method, ct string
		length     int64
		want       bool
	}{
		{"POST", "application/x-www-form-urlencoded", 10, true},
		{"PUT", " Application/X-WWW-Form-URLencoded ; charset=utf-8", -1, true},
		{"POST", "application/x-www-form-urlencoded", 0, false},
		{"PATCH", "application/x-www-form-urlencoded", 10, false},
		{"POST", "application/octet-stream", 10, false},
		{"POST", "multipart/form-data; boundary=x", 10, false},
	} {
		r := &http.Request{Method: c.method, ContentLength: c.length, Header: http.Header{"Content-Type": {c.ct}}}
		if got := formEncoded(r); got != c.want {
			t.Errorf("formEncoded(%s, %q, %d) = %v, want %v", c.method, c.ct, c.length, got, c.want)
		}
	}
}

// A token form is read whole up to the size Jetty takes (maxFormBody),
// and one byte more is refused: nexmux would otherwise forward a form cut
// short, or Nexus refuse it in its own words.
func TestTokenFormAtMostMaxFormBody(t *testing.T) {
	p, ci, reached := admitProxy(t)
	for _, c := range []struct {
		size int
		want int
	}{{maxFormBody, http.StatusOK}, {maxFormBody + 1, http.StatusRequestEntityTooLarge}} {
		body := "service=x&pad=" + strings.Repeat("a", c.size-len("service=x&pad="))
		r := httptest.NewRequest(http.MethodPost, "https://team-a.example.com/v2/token", strings.NewReader(body))
		r.RequestURI = "/v2/token"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		before := reached.Load()
		w := serveOn(p, ci, r)
		if w.Code != c.want || (c.want == http.StatusOK) != (reached.Load() == before+1) {
			t.Errorf("a %d-byte token form: %d %q, Nexus reached %d times; want %d", c.size, w.Code, w.Body.String(), reached.Load()-before, c.want)
		}
	}
}
