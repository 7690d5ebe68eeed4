package mux

import (
	"strings"
	"testing"
)

func TestParseNetHTTPError(t *testing.T) {
	for _, tc := range []struct {
		in     string
		status int
		detail string
		ok     bool
	}{
		{"HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "400 Bad Request", 400, "", true},
		{"HTTP/1.1 400 Bad Request: invalid header name" + netHTTPErrorHeaders + "400 Bad Request: invalid header name", 400, "invalid header name", true},
		{"HTTP/1.1 501 Not Implemented" + netHTTPErrorHeaders + "Unsupported transfer encoding", 501, "", true},
		// body differs from the status line: a handler's or a blob's bytes
		{"HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "400 Bad Request\n", 0, "", false},
		{"HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "400 Bad Request" + "more", 0, "", false},
		{"HTTP/1.1 200 OK" + netHTTPErrorHeaders + "200 OK", 0, "", false},
		{"HTTP/1.1 4000 Bad" + netHTTPErrorHeaders + "4000 Bad", 0, "", false},
		{"HTTP/1.1 " + strings.Repeat("x", 200) + netHTTPErrorHeaders + strings.Repeat("x", 200), 0, "", false},
		{"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n400 Bad Request", 0, "", false},
		{"", 0, "", false},
		{"HTTP/1.1 ", 0, "", false},
	} {
		status, detail, ok := parseNetHTTPError([]byte(tc.in))
		if status != tc.status || detail != tc.detail || ok != tc.ok {
			t.Errorf("%q: got %d %q %v, want %d %q %v", tc.in, status, detail, ok, tc.status, tc.detail, tc.ok)
		}
	}
}

func FuzzParseNetHTTPError(f *testing.F) {
	f.Add([]byte("HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "400 Bad Request"))
	f.Fuzz(func(t *testing.T, b []byte) {
		status, _, ok := parseNetHTTPError(b)
		if ok && (status < 400 || status > 599) {
			t.Fatalf("status %d", status)
		}
		if ok {
			_ = registryErrorResponse(status, netHTTPErrorMessage(status, ""))
		}
	})
}
