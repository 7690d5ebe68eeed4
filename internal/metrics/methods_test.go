package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The probe and scrape endpoints answer GET and HEAD; any other method gets
// 405 with Allow, as GET /upstreams does, and never runs the check: with one
// node a /readyz probes it, so a POST loop would be a probe loop, and a
// misconfigured probe sending POST should fail loudly, not pass.
func TestProbeEndpointsOtherMethodsGet405(t *testing.T) {
	var asked int
	h := New().Handler(&Readiness{Table: func(bool) (bool, string) {
		asked++
		return true, ""
	}})
	for _, path := range []string{"/readyz", "/readyz?writable", "/healthz", "/metrics"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, "PROPFIND"} {
			asked = 0
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" || asked != 0 {
				t.Errorf("%s %s: %d, Allow %q, readiness asked %d times; want 405, Allow \"GET, HEAD\", not asked", method, path, rec.Code, rec.Header().Get("Allow"), asked)
			}
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
			if rec.Code != http.StatusOK {
				t.Errorf("%s %s: %d, want 200", method, path, rec.Code)
			}
		}
	}
}
