package discover_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/discover"
	"github.com/nexmux/nexmux/route"
)

// answer is a Nexus that answers every request with one response, in
// memory.
type answer struct {
	status int
	ctype  string
	body   []byte
}

func (a answer) RoundTrip(r *http.Request) (*http.Response, error) {
	h := http.Header{}
	if a.ctype != "" {
		h.Set("Content-Type", a.ctype)
	}
	return &http.Response{StatusCode: a.status, Status: strconv.Itoa(a.status) + " " + http.StatusText(a.status), ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(string(a.body))), ContentLength: int64(len(a.body)), Request: r}, nil
}

// FuzzDiscover: whatever Nexus answers to repositorySettings, discover
// neither panics nor shows the credentials or a control character in its
// error; and a plan it prints is what nexmux reads: the YAML, read as a
// config file, gives exactly the plan's settings and nothing else; every
// line of the flags form is a comment or a flag; the mapping builds as a
// route table; and no user:password@ of a remote URL is shown.
func FuzzDiscover(f *testing.F) {
	for _, s := range []string{
		`[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082}}]`,
		`[{"name":"team-a-hosted","format":"docker","type":"hosted","online":true,"docker":{"httpPort":8083}},
		  {"name":"team-a","format":"docker","type":"group","docker":{"httpPort":8082,"httpsPort":8442},"group":{"memberNames":["team-a-hosted","team-a-proxy"]}},
		  {"name":"team-a-proxy","format":"docker","type":"proxy","online":false,"proxy":{"remoteUrl":"https://robot:Pa55w0rdS3cret@ghcr.io"}},
		  {"name":"maven-central","format":"maven2","type":"proxy"}]`,
		`[{"name":"m\ndefault-route: \"a\"","format":"maven2\n--default-route 'a'"},
		  {"name":"n\u0085strip-header: [\"x\"]","format":"npm\u2028mirror-auth-file: /etc/shadow"},
		  {"name":"hub","format":"docker","type":"proxy","proxy":{"remoteUrl":"https://ghcr.io/x\u2028passthrough: [\"a.example.com=evil:443\"]"}},
		  {"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082}}]`,
		`[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":70000}}]`,
		`[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8443}},{"name":"b","format":"docker","type":"hosted","docker":{"httpsPort":443}}]`,
		`[{"name":"team-","format":"docker","type":"hosted","docker":{"httpPort":8082}},{"name":"a..b","format":"docker","type":"hosted"}]`,
		`[{"name":"internal","format":"docker","type":"hosted","docker":{"subdomain":"docker","httpPort":8083}},{"name":"evil","format":"docker","type":"hosted","docker":{"subdomain":"*"}}]`,
		`[{"name":"docker_hosted","format":"docker","type":"hosted","docker":{"httpPort":8082}}]`,
		`[{"name":"hub","format":"docker","type":"proxy","proxy":{"remoteUrl":"https://registry-1.docker.io"}},{"name":"q","format":"docker","type":"proxy","proxy":{"remoteUrl":"robot:pw@quay.io"}}]`,
		`[{"name":"mirror","format":"docker","type":"proxy","proxy":{"remoteUrl":"https://ghcr.io"}}]`,
		`<html>login</html>`, `[`, `[]`, `null`, `{"name":"a"}`,
	} {
		f.Add([]byte(s), "example.com", uint8(0))
		f.Add([]byte(s), "", uint8(1))
	}
	f.Add([]byte("upstream failed; Authorization: Basic YWRtaW46UGE1NXcwcmRTM2NyZXQ="), "", uint8(3))
	const user, password = "admin", "Pa55w0rdS3cret"
	encoded := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body []byte, domain string, how uint8) {
		a := answer{status: http.StatusOK, ctype: "application/json", body: body}
		switch how % 4 {
		case 1:
			a.ctype = ""
		case 2:
			a.ctype = "text/html; charset=" + string(body[:min(len(body), 16)])
		case 3:
			a.status = http.StatusBadGateway
		}
		repos, err := discover.Fetch(context.Background(), &http.Client{Transport: a}, "http://nexus:8081", user, password)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, password) || strings.Contains(msg, encoded) {
				t.Fatalf("the error shows the credentials: %q", msg)
			}
			for _, r := range msg {
				if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == utf8.RuneError {
					t.Fatalf("error carries control character %U: %q", r, msg)
				}
			}
			return
		}
		plan, err := discover.MakePlan(repos, domain)
		if err != nil {
			return
		}
		y, fl := plan.YAML(), plan.Flags()
		var mirrors []string
		for _, m := range plan.Mirrors {
			mirrors = append(mirrors, plan.MirrorHost+"/"+m)
		}
		file := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		c := config.Defaults()
		if err := c.ApplyFile(file); err != nil {
			t.Fatalf("the printed YAML is refused: %v\n%s", err, y)
		}
		want := []string{"route", "port", "mirror"}
		if plan.Listen != "" {
			want = append(want, "listen")
		}
		for _, k := range c.FileKeys {
			if !slices.Contains(want, k) {
				t.Fatalf("the printed YAML sets %s:\n%s", k, y)
			}
		}
		if !slices.Equal(c.Route, plan.Routes) || !slices.Equal(c.Port, plan.Ports) || !slices.Equal(c.Mirror, mirrors) {
			t.Fatalf("the printed YAML gives route %q port %q mirror %q; the plan has %q %q %q\n%s", c.Route, c.Port, c.Mirror, plan.Routes, plan.Ports, mirrors, y)
		}
		if plan.Listen != "" && c.Listen != plan.Listen {
			t.Fatalf("the printed YAML gives listen %q, the plan %q", c.Listen, plan.Listen)
		}
		for _, line := range strings.FieldsFunc(fl, func(r rune) bool { return r == '\n' || r == '\r' || r == '\u0085' || r == '\u2028' || r == '\u2029' }) {
			if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "--") {
				t.Fatalf("flags output has a line that is neither a comment nor a flag: %q\n%s", line, fl)
			}
		}
		if _, err := route.Build(route.Spec{Routes: plan.Routes, Ports: plan.Ports, Mirrors: mirrors}); err != nil {
			t.Fatalf("the printed mapping does not build: %v\n%s", err, y)
		}
		for _, r := range repos {
			if r.Proxy == nil {
				continue
			}
			if u, err := url.Parse(r.Proxy.RemoteURL); err == nil && u.User != nil {
				if pw, set := u.User.Password(); set && pw != "" && (strings.Contains(y, ":"+pw+"@") || strings.Contains(fl, ":"+pw+"@")) {
					t.Fatalf("the output shows the password of remote %q:\n%s", r.Proxy.RemoteURL, y)
				}
			}
		}
	})
}
