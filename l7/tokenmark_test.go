package l7

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/route"
)

func TestTakeSession(t *testing.T) {
	list := route.PushList("scope=repository:app:push&scope=repository:base:pull,push")
	for _, tc := range []struct {
		in, out string
		want    route.Auth
		pushed  string
	}{
		{"", "", route.AuthNone, ""},
		{"Basic YWRtaW46YWRtaW4xMjM=", "Basic YWRtaW46YWRtaW4xMjM=", route.AuthBasic, ""},
		{"Bearer DockerToken.abc", "Bearer DockerToken.abc", route.AuthBearer, ""},
		{"Bearer DockerToken.abc" + pushMark, "Bearer DockerToken.abc", route.AuthBearerPush, ""},
		{"bearer DockerToken.abc" + pushMark, "bearer DockerToken.abc", route.AuthBearerPush, ""},
		{"Bearer DockerToken.abc" + pushMark + list, "Bearer DockerToken.abc", route.AuthBearerPush, list},
		{"Bearer " + pushMark + ".x", "Bearer " + pushMark + ".x", route.AuthBearer, ""},
		{"Bearer a" + pushMark + "-0123", "Bearer a" + pushMark + "-0123", route.AuthBearer, ""},
	} {
		h := http.Header{}
		if tc.in != "" {
			h.Set("Authorization", tc.in)
		}
		if got, pushed := takeSession(h); got != tc.want || pushed != tc.pushed {
			t.Errorf("takeSession(%q) = %s %q, want %s %q", tc.in, got, pushed, tc.want, tc.pushed)
		}
		if got := h.Get("Authorization"); got != tc.out {
			t.Errorf("takeSession(%q) left Authorization %q, want %q", tc.in, got, tc.out)
		}
	}
}

func tokenResp(status int, body []byte, enc string) *http.Response {
	h := http.Header{"Content-Type": {"application/json"}}
	if enc != "" {
		h.Set("Content-Encoding", enc)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
}

func TestMarkToken(t *testing.T) {
	plain := []byte(`{"token":"DockerToken.1234","expires_in":300}`)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	for _, tc := range []struct {
		name string
		resp *http.Response
		want map[string]any // nil: body unchanged
	}{
		{"plain", tokenResp(200, plain, ""), map[string]any{"token": "DockerToken.1234" + pushMark, "expires_in": 300.0}},
		{"gzip", tokenResp(200, gz.Bytes(), "gzip"), map[string]any{"token": "DockerToken.1234" + pushMark, "expires_in": 300.0}},
		{"identity", tokenResp(200, plain, "identity"), map[string]any{"token": "DockerToken.1234" + pushMark, "expires_in": 300.0}},
		{"br untouched", tokenResp(200, plain, "br"), nil},
		// takeSession takes one mark off: a second would reach Nexus.
		{"marked already untouched", tokenResp(200, []byte(`{"token":"a`+pushMark+`"}`), ""), nil},
		{"access_token too", tokenResp(200, []byte(`{"token":"a","access_token":"a"}`), ""), map[string]any{"token": "a" + pushMark, "access_token": "a" + pushMark}},
		{"401 untouched", tokenResp(401, plain, ""), nil},
		{"not JSON untouched", tokenResp(200, []byte("<html>"), ""), nil},
		{"no token untouched", tokenResp(200, []byte(`{"errors":[]}`), ""), nil},
		{"too large untouched", tokenResp(200, []byte(`{"token":"`+strings.Repeat("x", maxTokenResponse)+`"}`), ""), nil},
	} {
		before := tc.resp.Header.Get("Content-Encoding")
		var orig []byte
		if tc.want == nil {
			orig, _ = io.ReadAll(tc.resp.Body)
			tc.resp.Body = io.NopCloser(bytes.NewReader(orig))
		}
		if err := markToken(tc.resp, pushMark); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, _ := io.ReadAll(tc.resp.Body)
		if tc.want != nil && int64(len(got)) != tc.resp.ContentLength || tc.resp.Header.Get("Content-Length") != "" && tc.resp.Header.Get("Content-Length") != itoa(len(got)) {
			t.Errorf("%s: length %d, ContentLength %d, header %q", tc.name, len(got), tc.resp.ContentLength, tc.resp.Header.Get("Content-Length"))
		}
		if tc.want == nil {
			if !bytes.Equal(got, orig) || tc.resp.Header.Get("Content-Encoding") != before {
				t.Errorf("%s: body changed (%d bytes, was %d)", tc.name, len(got), len(orig))
			}
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("%s: %q: %v", tc.name, got, err)
		}
		for k, v := range tc.want {
			if m[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.name, k, m[k], v)
			}
		}
		if len(m) != len(tc.want) || tc.resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s: got %v (encoding %q)", tc.name, m, tc.resp.Header.Get("Content-Encoding"))
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// A route that is not split has no session to tell: the token Nexus
// issues for a push scope reaches the client exactly as issued (it is a
// Nexus user key, good on every name and on Nexus itself).
func TestPushTokenUnmarkedOnSingleRepositoryRoute(t *testing.T) {
	const token = `{"token":"DockerToken.0b1c0d36","access_token":"DockerToken.0b1c0d36"}`
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/repository/team-a/v2/token" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, token)
		}
	})
	addr, _ := haProxy(t, io.Discard, 0, node)
	resp, body := send(t, addr, http.MethodGet, "/v2/token?account=u&scope=repository%3Aapp%3Apull%2Cpush&service=x", nil)
	if resp.StatusCode != http.StatusOK || body != token {
		t.Errorf("%d %s, want 200 %s", resp.StatusCode, body, token)
	}
}

// A push scope after the affinity tag's '?' ("_nexmux=T?scope=...push")
// is a push scope to Nexus, which issues a push token there: the hosted
// repository asks for it and its token is marked, as any push token's
// is, or the session's HEADs would go to the group.
func TestPushScopeBehindTheAffinityTagMarked(t *testing.T) {
	const token = `{"token":"DockerToken.0b1c0d36"}`
	asked := make(chan string, 1)
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/v2/token") {
			asked <- r.URL.Path + "?" + r.URL.RawQuery
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, token)
		}
	})
	addr, _ := haProxyURLs(t, io.Discard, 0, "pull:team-a,push:team-a-hosted", "http://"+node.addr)
	resp, body := send(t, addr, http.MethodGet, "/v2/token?_nexmux=T?scope=repository%3Aapp%3Apull%2Cpush&service=x", nil)
	const want = "/repository/team-a-hosted/v2/token?scope=repository%3Aapp%3Apull%2Cpush&service=x"
	if got := <-asked; got != want {
		t.Errorf("Nexus was asked %s, want %s", got, want)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "DockerToken.0b1c0d36"+pushMark) {
		t.Errorf("%d %s, want the push token marked", resp.StatusCode, body)
	}
}
