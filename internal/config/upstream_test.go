package config

import (
	"strings"
	"testing"
)

// Every bad --upstream is listed in one run, and a context path with dot
// segments is refused.
func TestEveryBadUpstreamListedAtOnce(t *testing.T) {
	c := Defaults()
	c.Route = nil
	c.Port = []string{"8082=team-a"}
	c.Upstream = []string{
		"ftp://nexus:8081",
		"http://nexus:8081/nexus/../service",
		"http://:8081",
		"http://nexus:8081/a/%2e%2e/b",
		"http://u:p@nexus:8081",
	}
	_, err := c.Build()
	if err == nil {
		t.Fatal("Build accepted bad upstreams")
	}
	for _, want := range []string{
		`upstream "ftp://nexus:8081": scheme`,
		`upstream "http://nexus:8081/nexus/../service": context path /nexus/../service has a dot segment`,
		`upstream "http://:8081": no host`,
		`upstream "http://nexus:8081/a/%2e%2e/b": context path`,
		`upstream "http://u:xxxxx@nexus:8081": no query`, // the password hidden
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	c.Upstream = []string{"http://nexus:8081/nexus/", "http://nexus-1:8081/nexus"}
	if _, err := c.Build(); err != nil {
		t.Fatalf("good HA upstreams refused: %v", err)
	}
}

// An --upstream or --drain-upstream written without its scheme
// ("admin:pw@nexus:8081", "http:admin:pw@nexus") still parses as a URL,
// with the password in its opaque part, where url.Redacted does not look:
// the refusal, printed by check and logged on a refused reload, must not
// show it.
func TestUpstreamWithoutSchemeHidesItsPassword(t *testing.T) {
	for _, raw := range []string{
		"admin:S3CRET@nexus:8081",
		"http:admin:S3CRET@nexus:8081",
		"http:/admin:S3CRET@nexus:8081",
		"admin:S3CRET@nexus:8081/nexus?x=1",
	} {
		c := Defaults()
		c.Route = nil
		c.Port = []string{"8082=team-a"}
		c.Upstream = []string{raw}
		c.DrainUpstream = []string{raw}
		_, err := c.Build()
		if err == nil {
			t.Fatalf("%q accepted", raw)
		}
		if strings.Contains(err.Error(), "S3CRET") {
			t.Errorf("%q: the refusal shows the password:\n%v", raw, err)
		}
		if !strings.Contains(err.Error(), "nexus:8081") {
			t.Errorf("%q: the refusal no longer names the host:\n%v", raw, err)
		}
	}
}

// Every problem is one line of the list check prints and serve writes to
// stderr before it starts: a file name or a value holding a line break or
// an escape sequence (a templated config, a variable) must not start a
// line of its own that reads like another problem or a log line, nor
// drive the terminal.
func TestProblemWithALineBreakStaysOneLine(t *testing.T) {
	const forged = "x\nlevel=ERROR msg=forged\x1b[2J"
	c := Defaults()
	c.Route = []string{"team-a.example.com=team-a"}
	c.Cert, c.Key = []string{forged}, []string{forged}
	c.AffinitySecretFile = forged
	c.MirrorAuthFile = forged
	c.Mirror = []string{"mirror.example.com/docker.io=dockerhub-proxy"}
	_, err := c.Build()
	if err == nil {
		t.Fatal("Build accepted missing files")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 4 { // the secret file, the auth file, the cert, the key
		t.Errorf("%d lines for 4 problems:\n%s", len(lines), err)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "level=") || strings.ContainsAny(l, "\x1b\r") {
			t.Errorf("problem line %q", l)
		}
	}
}

// An --upstream or --drain-upstream host the dialer refuses is refused by
// check, each listed, beside the other problems: it passed and failed
// only at the first dial ("lookup 127.0.0.01: no such host").
func TestUpstreamHostsDialWouldRefuseListedAtOnce(t *testing.T) {
	c := Defaults()
	c.Route = nil
	c.Port = []string{"8082=team-a"}
	c.Listen = "127.0.0.01:8443"
	c.Upstream = []string{"http://127.0.0.01:8081", "http://[fe80::1%25eth%200]:8081", "http://admin:s3cret@10.1:8081", "http://nexus:8081"}
	c.DrainUpstream = []string{"http://[fe80::1%2525eth0]:8081"}
	_, err := c.Build()
	if err == nil {
		t.Fatal("Build accepted hosts the dialer refuses")
	}
	msg := HideCredentials(err.Error())
	for _, want := range []string{
		`listen "127.0.0.01:8443": "127.0.0.01" is not a host name or IP address`,
		`upstream "http://127.0.0.01:8081": "127.0.0.01" is not a host name or IP address`,
		`upstream "http://[fe80::1%25eth%200]:8081": zone "eth 0" is not an interface name`,
		`upstream "http://xxxxx@10.1:8081": `, // as check prints it
		`"10.1" is not a host name or IP address`,
		`drain-upstream "http://[fe80::1%2525eth0]:8081": `,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "s3cret") {
		t.Errorf("shows the password:\n%s", msg)
	}
	c.Listen = ":8443"
	c.Upstream = []string{"http://nexus.:8081", "http://nexus-1.ns.svc.cluster.local:8081", "http://[fe80::1%25eth0]:8081"}
	c.DrainUpstream = []string{"http://[fe80::1%25eth0]:8081"}
	if _, err := c.Build(); err != nil {
		t.Errorf("names and a valid zone refused: %v", err)
	}
}
