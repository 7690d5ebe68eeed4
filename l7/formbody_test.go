package l7

import (
	"net/http"
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
