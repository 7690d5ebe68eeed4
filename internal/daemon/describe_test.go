package daemon_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// describeQueries ask Nexus's repository servlet for a description of the
// request (every header, Authorization included) instead of the answer, in
// the forms Jetty decodes to the parameter name "describe".
var describeQueries = []string{
	"describe=json",
	"describe",
	"n=1&describe=html",
	"%64escribe=json",
	"%64%65%73%63%72%69%62%65=json",
	"%u0064escribe=json",
}

// TestMirrorDescribeKeepsAuthFileSecret: an anonymous client of a mirror
// name must not get Nexus to describe a request nexmux added the
// --mirror-auth-file credentials to: the description would hand it the
// mirror user's password.
func TestMirrorDescribeKeepsAuthFileSecret(t *testing.T) {
	s := mirrorStack(t, true)
	secret := base64.StdEncoding.EncodeToString([]byte(stack.User + ":" + stack.Password))
	for _, q := range describeQueries {
		for _, target := range []string{"/v2/library/alpine/manifests/3?" + q, "/v2/ghcr.io/acme/app/tags/list?" + q,
			"/repository/quay-proxy/v2/acme/tool/manifests/2?" + q, "/v2/?" + q, "/v2/acme/app/manifests/1?ns=ghcr.io&" + q} {
			path, q, _ := strings.Cut(target, "?")
			s.Nexus.ResetRequests()
			resp, body := mirrorGet(t, s, "GET", target, false)
			if strings.Contains(body, secret) || strings.Contains(body, stack.Password) {
				t.Errorf("GET %s?%s: %d, the answer holds the --mirror-auth-file credentials: %.300s", path, q, resp.StatusCode, body)
				continue
			}
			if resp.StatusCode != 400 || !strings.Contains(body, `"code":"UNSUPPORTED"`) {
				t.Errorf("GET %s?%s: %d %.200s, want nexmux's 400 UNSUPPORTED", path, q, resp.StatusCode, body)
			}
			if reqs := s.Nexus.Requests(); len(reqs) != 0 {
				t.Errorf("GET %s?%s reached Nexus", path, q)
			}
		}
	}
	// Parameters that only look like it still go through.
	for _, q := range []string{"last=describe", "describer=1", "x=%64escribe"} {
		if resp, body := mirrorGet(t, s, "GET", "/v2/library/alpine/tags/list?"+q, false); resp.StatusCode != 200 {
			t.Errorf("GET tags/list?%s: %d %.200s, want 200", q, resp.StatusCode, body)
		}
	}
}

// formSend sends one request with a body to host (a stack name).
func formSend(t *testing.T, s *stack.Stack, host, method, path, ct, body string, auth bool) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+host+":"+itoa(s.Port)+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if auth {
		req.SetBasicAuth(stack.User, stack.Password)
	}
	resp, err := (&http.Client{Transport: s.Transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestDescribeInFormBodyRefused: Jetty takes the form-encoded body of a
// POST or PUT for request parameters too (Request.extractContentParameters,
// read by Nexus's HttpParametersAdapter before the payload), so a describe
// field there gets the description, headers and all, that ?describe gets.
// nexmux refuses both; a form body without one (containerd's token POST)
// and an empty one still go to Nexus.
func TestDescribeInFormBodyRefused(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	mirror := mirrorStack(t, true)
	team := stack.Start(t, stack.Options{Config: confinedRoutes()})
	secret := base64.StdEncoding.EncodeToString([]byte(stack.User + ":" + stack.Password))
	for _, c := range []struct {
		s                        *stack.Stack
		host, method, path, body string
		ct                       string
		auth                     bool
	}{
		{mirror, mirrorHost, "POST", "/v2/token", "grant_type=password&describe=json", form, false},
		{mirror, mirrorHost, "POST", "/v2/token", "%64escribe=json&service=x", form + "; charset=utf-8", false},
		{mirror, mirrorHost, "POST", "/repository/dockerhub-proxy/v2/token", "describe", form, false},
		{team, "team-a.nexmux.test", "POST", "/v2/token", "scope=x&describe=json", form, true},
		{team, "team-a.nexmux.test", "POST", "/v2/app/blobs/uploads/", "describe=json", form, true},
		{team, "team-a.nexmux.test", "POST", "/v2/app/blobs/uploads/", "describe=json", "Application/X-WWW-Form-Urlencoded ; charset=UTF-8", true},
		{team, "team-a.nexmux.test", "PUT", "/v2/app/manifests/1", "a=b&describe=html", form, true},
		{team, "team-a.nexmux.test", "POST", "/v2/token", "\xfe\xff\x00d\x00e\x00s\x00c\x00r\x00i\x00b\x00e", form + "; charset=UTF-16", true},
	} {
		c.s.Nexus.ResetRequests()
		resp, body := formSend(t, c.s, c.host, c.method, c.path, c.ct, c.body, c.auth)
		name := c.method + " " + c.host + c.path + " " + c.ct + " " + c.body
		if strings.Contains(body, secret) || strings.Contains(body, "X-Forwarded-For") {
			t.Errorf("%s: %d, Nexus described the request: %.300s", name, resp.StatusCode, body)
			continue
		}
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(body, `"code":"UNSUPPORTED"`) {
			t.Errorf("%s: %d %.200s, want nexmux's UNSUPPORTED refusal", name, resp.StatusCode, body)
		}
		if reqs := c.s.Nexus.Requests(); len(reqs) != 0 {
			t.Errorf("%s reached Nexus", name)
		}
	}
	// Forms without describe, and empty bodies, still reach Nexus.
	for _, c := range []struct {
		s                  *stack.Stack
		host, method, path string
		body               string
		want               int
	}{
		{mirror, mirrorHost, "POST", "/v2/token", "grant_type=password&service=x&scope=repository%3Alibrary%2Falpine%3Apull", 404},
		{team, "team-a.nexmux.test", "POST", "/v2/token", "grant_type=password&describer=1", 404},
		{team, "team-a.nexmux.test", "POST", "/v2/app/blobs/uploads/", "", 202},
	} {
		c.s.Nexus.ResetRequests()
		resp, body := formSend(t, c.s, c.host, c.method, c.path, form, c.body, true)
		if resp.StatusCode != c.want || len(c.s.Nexus.Requests()) == 0 {
			t.Errorf("%s %s %q: %d %.200s, want Nexus's %d", c.method, c.path, c.body, resp.StatusCode, body, c.want)
		}
	}
}

// TestDescribeAfterTheAffinityTagRefused: nexmux takes the upload
// affinity tag out of every query, and a '?' in the tag's value ends it
// with what follows kept as a parameter of its own: "_nexmux=x?describe"
// holds no describe parameter as the client sent it, but one as Nexus
// gets it. It must be refused as any other describe.
func TestDescribeAfterTheAffinityTagRefused(t *testing.T) {
	mirror := mirrorStack(t, true)
	team := stack.Start(t, stack.Options{Config: confinedRoutes()})
	secret := base64.StdEncoding.EncodeToString([]byte(stack.User + ":" + stack.Password))
	queries := []string{"_nexmux=x?describe=json", "_nexmux=?describe", "n=1&_nexmux=AAAA?%64escribe=json"}
	for _, c := range []struct {
		s          *stack.Stack
		host, path string
	}{
		{mirror, mirrorHost, "/v2/ghcr.io/acme/app/tags/list"},
		{mirror, mirrorHost, "/v2/"},
		{team, "team-a.nexmux.test", "/v2/app/tags/list"},
		{team, "team-a.nexmux.test", "/v2/app/blobs/uploads/0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f"},
	} {
		for _, q := range queries {
			c.s.Nexus.ResetRequests()
			resp, body := formSend(t, c.s, c.host, "GET", c.path+"?"+q, "", "", c.s == team)
			name := "GET " + c.host + c.path + "?" + q
			if strings.Contains(body, secret) || strings.Contains(body, "X-Forwarded-For") {
				t.Errorf("%s: %d, Nexus described the request: %.300s", name, resp.StatusCode, body)
				continue
			}
			if resp.StatusCode != 400 || !strings.Contains(body, `"code":"UNSUPPORTED"`) {
				t.Errorf("%s: %d %.200s, want nexmux's 400 UNSUPPORTED", name, resp.StatusCode, body)
			}
			if reqs := c.s.Nexus.Requests(); len(reqs) != 0 {
				t.Errorf("%s reached Nexus as %s?%s", name, reqs[0].RawPath, reqs[0].RawQuery)
			}
		}
	}
}

// TestDescribeBeforeAFragmentRefused: Jetty ends the query at a '#', Go
// reads the '#' as part of it: "?describe#x" holds no parameter named
// describe as nexmux reads it, but one as Nexus does. On a mirror name an
// anonymous client got the --mirror-auth-file credentials described.
func TestDescribeBeforeAFragmentRefused(t *testing.T) {
	mirror := mirrorStack(t, true)
	team := stack.Start(t, stack.Options{Config: confinedRoutes()})
	secret := base64.StdEncoding.EncodeToString([]byte(stack.User + ":" + stack.Password))
	for _, c := range []struct {
		s          *stack.Stack
		host, path string
	}{
		{mirror, mirrorHost, "/v2/ghcr.io/acme/app/tags/list"},
		{mirror, mirrorHost, "/v2/"},
		{team, "team-a.nexmux.test", "/v2/app/tags/list"},
	} {
		for _, q := range []string{"describe#x", "n=1&%64escribe#", "describe=json#&x=1"} {
			c.s.Nexus.ResetRequests()
			req, err := http.NewRequest("GET", "https://"+c.host+":"+itoa(c.s.Port)+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.RawQuery = q // sent as it is: a URL's own '#' would start its fragment
			if c.s == team {
				req.SetBasicAuth(stack.User, stack.Password)
			}
			resp, err := (&http.Client{Transport: c.s.Transport()}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body, name := string(b), "GET "+c.host+c.path+"?"+q
			if strings.Contains(body, secret) || strings.Contains(body, "X-Forwarded-For") {
				t.Errorf("%s: %d, Nexus described the request: %.300s", name, resp.StatusCode, body)
				continue
			}
			if resp.StatusCode != 400 || !strings.Contains(body, `"code":"UNSUPPORTED"`) {
				t.Errorf("%s: %d %.200s, want nexmux's 400 UNSUPPORTED", name, resp.StatusCode, body)
			}
			if reqs := c.s.Nexus.Requests(); len(reqs) != 0 {
				t.Errorf("%s reached Nexus as %s?%s", name, reqs[0].RawPath, reqs[0].RawQuery)
			}
		}
	}
}
