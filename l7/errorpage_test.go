package l7

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
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
			// No Content-Length: unknown, as net/http gives it.
			ContentLength: -1,
			Request:       &http.Request{Method: c.method},
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

// An error Nexus (its Jetty, a front) answers with no body and no type at
// all reaches the client as a Registry API error too, coded by its status
// as a page's is: docker prints such a 4xx as "error parsing HTTP 403
// response body: unexpected end of JSON input". A HEAD's answer, which
// has no body whatever it says (every blob check of a push is a HEAD
// answered 404), goes as it came.
func TestEmptyNexusErrorsBecomeRegistryErrors(t *testing.T) {
	var status atomic.Int64
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", status.Load(), http.StatusText(int(status.Load())))
		return true
	})
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	for _, c := range []struct {
		method string
		status int
		code   string // "": as it came
	}{
		{http.MethodGet, http.StatusInternalServerError, "UNAVAILABLE"},
		{http.MethodPut, http.StatusForbidden, "DENIED"},
		{http.MethodGet, http.StatusNotFound, "NAME_UNKNOWN"},
		{http.MethodDelete, http.StatusMethodNotAllowed, "UNSUPPORTED"},
		{http.MethodHead, http.StatusNotFound, ""},
	} {
		status.Store(int64(c.status))
		resp, body := send(t, addr, c.method, "/v2/app/manifests/1", nil)
		var e struct {
			Errors []struct{ Code, Message string }
		}
		switch {
		case resp.StatusCode != c.status:
			t.Errorf("%s answered %d: client got %s", c.method, c.status, resp.Status)
		case c.code == "":
			if ct := resp.Header.Get("Content-Type"); ct != "" || body != "" {
				t.Errorf("%s answered %d: client got Content-Type %q, body %q; want it as it came", c.method, c.status, ct, body)
			}
		case resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil || len(e.Errors) != 1 ||
			e.Errors[0].Code != c.code || e.Errors[0].Message != http.StatusText(c.status):
			t.Errorf("%s answered %d with no body: client got Content-Type %q, body %q; want a JSON %s error", c.method, c.status, resp.Header.Get("Content-Type"), body, c.code)
		}
	}
}

// An error page that names the node answering it (a front beside Nexus,
// a servlet's message) reaches the client without that address: as with
// Locations, what would lead past nexmux stays in the log.
func TestErrorPageWordsHideTheNode(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		page := fmt.Sprintf("backend http://%s/repository/team-a is down (%s)", node, node)
		fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(page), page)
		return true
	})
	node = n.addr
	host, _, _ := net.SplitHostPort(node)
	addr, _ := haProxy(t, io.Discard, 4, &haNode{addr: n.addr})
	resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "UNAVAILABLE") || !strings.Contains(body, "is down") {
		t.Fatalf("%s %s, want a 503 Registry API error with the page's words", resp.Status, body)
	}
	if strings.Contains(body, host) {
		t.Errorf("the client was told the node's address: %s", body)
	}
}

// A Registry API error Nexus writes itself (JSON) that names the node
// answering reaches the client without that address, its code kept, as
// a page's words do; one that names no node goes byte for byte.
func TestJSONErrorWordsHideTheNode(t *testing.T) {
	var node string
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		body := `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to http://` + node + `/repository/team-a","detail":null}]}`
		if strings.HasSuffix(r.URL.Path, "/2") {
			body = `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"2"}}]}`
		}
		fmt.Fprintf(c, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	})
	node = n.addr
	host, _, _ := net.SplitHostPort(node)
	addr, _ := haProxy(t, io.Discard, 4, &haNode{addr: n.addr})
	resp, body := send(t, addr, http.MethodGet, "/v2/app/blobs/sha256:"+strings.Repeat("0", 64), nil)
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if resp.StatusCode != http.StatusNotFound || json.Unmarshal([]byte(body), &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "BLOB_UNKNOWN" {
		t.Fatalf("%s %q, want Nexus's 404 BLOB_UNKNOWN", resp.Status, body)
	}
	if strings.Contains(body, host) {
		t.Errorf("the client was told the node's address: %s", body)
	}
	resp, body = send(t, addr, http.MethodGet, "/v2/app/manifests/2", nil)
	if want := `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"2"}}]}`; body != want {
		t.Errorf("%s %q, want Nexus's body as it came", resp.Status, body)
	}
}
