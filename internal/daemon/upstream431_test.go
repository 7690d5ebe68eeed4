package daemon_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// nexmux takes request headers up to 64 KiB (Bearer tokens, long scopes);
// Nexus's Jetty refuses more than 8 KiB with 431 before Nexus sees the
// request, in its own non-JSON page. A client that sent headers between
// the two got that page: registry clients print a Registry-API error and
// little else. It gets a JSON error with the same status, and the
// connection goes on serving.
func TestJetty431BecomesRegistryError(t *testing.T) {
	st, _ := logStackWith(t, stack.Options{
		Config:  teamRoutes(),
		Fixture: fixtures.Config{MaxRequestHeaderBytes: fixtures.JettyMaxRequestHeaderBytes},
	})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
		&tls.Config{ServerName: "team-a." + stack.Domain, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	host := "Host: " + st.Host("team-a") + "\r\n"
	big := "GET /v2/ HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n"
	if _, err := io.WriteString(c, big+"GET /v2/ HTTP/1.1\r\n"+host+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("20 KiB of headers: %s %q, want 431", resp.Status, body)
	}
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, body %q: want a Registry-API JSON error", ct, body)
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code == "" || e.Errors[0].Message == "" {
		t.Errorf("body %q is not a registry error (%v)", body, err)
	}
	// The next request on the connection is served.
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request after the 431: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge || resp.StatusCode >= 500 {
		t.Errorf("the request after the 431: %s", resp.Status)
	}
}
