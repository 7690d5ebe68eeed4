package daemon_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// errorCode is the first Registry API error code of a body ("" if none).
func errorCode(body []byte) string {
	var e struct{ Errors []struct{ Code string } }
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// doAuthed sends method path on host with the stack's credentials and
// returns the status and body.
func doAuthed(t *testing.T, st *stack.Stack, method, host, path string, h http.Header) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "https://"+st.Host(host)+path, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Transport: st.Transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// A 4xx error page from Nexus or its Jetty (a bad URI, a request too
// large, a range past a blob's end) says the request itself is wrong:
// sending it again gets the same answer. dockerd retries a layer's push or
// pull after a Registry API error unless its code is UNAUTHORIZED,
// UNSUPPORTED, DENIED, TOOMANYREQUESTS or NAME_UNKNOWN (moby's
// retryOnError), and it never retried such a page while it was text. So
// the error nexmux makes of it must carry one of those codes; only a 5xx
// is worth another try.
func TestNexusClientErrorPagesAreNotRetried(t *testing.T) {
	const jetty400 = "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=ISO-8859-1\"/>\n<title>Error 400 Ambiguous URI path separator</title>\n</head>\n<body><h2>HTTP ERROR 400 Ambiguous URI path separator</h2>\n</body>\n</html>\n"
	st := stack.Start(t, stack.Options{Config: teamRoutes(), Upstreams: func(nexusURL string) []string {
		target, _ := url.Parse(nexusURL)
		rest := httputil.NewSingleHostReverseProxy(target)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.Contains(r.URL.Path, "/v2/jetty/"):
				w.Header().Set("Content-Type", "text/html;charset=iso-8859-1")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, jetty400)
			case strings.Contains(r.URL.Path, "/v2/huge/"):
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				io.WriteString(w, "Request Entity Too Large\n")
			default:
				rest.ServeHTTP(w, r)
			}
		}))
		t.Cleanup(front.Close)
		return []string{front.URL}
	}})
	img := pushImage(t, st, st.Host("team-a-push")+"/app:1")
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	size, _ := layers[0].Size()

	noRetry := map[string]bool{"UNAUTHORIZED": true, "UNSUPPORTED": true, "DENIED": true, "TOOMANYREQUESTS": true, "NAME_UNKNOWN": true}
	for _, c := range []struct {
		what, method, path string
		h                  http.Header
		status             int
	}{
		{"Jetty's 400 page", http.MethodGet, "/v2/jetty/app/manifests/1", nil, http.StatusBadRequest},
		{"a 413 page", http.MethodPatch, "/v2/huge/app/blobs/uploads/x", nil, http.StatusRequestEntityTooLarge},
		// The fixture's own answer (http.Error, text/plain) to dockerd's
		// resume of a layer it had read to the end.
		{"a range past the blob's end", http.MethodGet, "/v2/app/blobs/" + digest.String(),
			http.Header{"Range": {fmt.Sprintf("bytes=%d-", size)}}, http.StatusRequestedRangeNotSatisfiable},
	} {
		status, body := doAuthed(t, st, c.method, "team-a-push", c.path, c.h)
		code := errorCode(body)
		if status != c.status || !noRetry[code] {
			t.Errorf("%s: %d %s (%q), want %d with a code dockerd does not retry", c.what, status, code, body, c.status)
		}
	}
}

// A Registry API error that reaches nexmux labelled text/plain (a filter
// or a front between nexmux and Nexus that sets its own type) is already
// what clients read: they parse an error body whatever its type. Its code
// must reach them as Nexus wrote it: BLOB_UPLOAD_UNKNOWN is what makes
// dockerd start a layer's upload again, MANIFEST_UNKNOWN what it reports
// as a missing tag.
func TestRegistryErrorsLabelledTextKeepTheirCode(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: teamRoutes(), Upstreams: func(nexusURL string) []string {
		target, _ := url.Parse(nexusURL)
		rest := httputil.NewSingleHostReverseProxy(target)
		rest.ModifyResponse = func(resp *http.Response) error {
			if resp.StatusCode >= 400 {
				resp.Header.Set("Content-Type", "text/plain; charset=utf-8")
			}
			return nil
		}
		front := httptest.NewServer(rest)
		t.Cleanup(front.Close)
		return []string{front.URL}
	}})
	pushImage(t, st, st.Host("team-a-push")+"/app:1")
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/v2/app/manifests/no-such-tag", http.StatusNotFound, "MANIFEST_UNKNOWN"},
		{http.MethodPatch, "/v2/app/blobs/uploads/6b4cbd1c-2a5e-4a3b-9d0c-0d1f3c7a8e11", http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN"},
	} {
		status, body := doAuthed(t, st, c.method, "team-a-push", c.path, nil)
		if status != c.status || errorCode(body) != c.code {
			t.Errorf("%s %s: %d %q, want %d %s", c.method, c.path, status, body, c.status, c.code)
		}
	}
}
