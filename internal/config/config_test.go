package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"
)

// writeCert creates a self-signed ECDSA P-256 certificate for names in dir and
// returns the paths of its PEM certificate and key.
func writeCert(t *testing.T, dir, file string, names ...string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath = filepath.Join(dir, file+".crt")
	keyPath = filepath.Join(dir, file+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// problems splits a Build error into its lines, checking it is the
// one-problem-per-line multierror Build promises.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("Build succeeded, want problems")
	}
	me, ok := err.(*multierror.Error)
	if !ok {
		t.Fatalf("Build error is %T, want *multierror.Error", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(me.Errors) {
		t.Fatalf("%d lines for %d problems:\n%v", len(lines), len(me.Errors), err)
	}
	return lines
}

func wantProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	lines := problems(t, err)
	if len(lines) != len(want) {
		t.Fatalf("%d problems, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.Contains(l, w) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no problem mentions %q:\n%s", w, strings.Join(lines, "\n"))
		}
	}
}

func TestBuildValid(t *testing.T) {
	dir := t.TempDir()
	c1, k1 := writeCert(t, dir, "registry", "registry.example.com")
	c2, k2 := writeCert(t, dir, "wild", "*.example.com", "example.com")
	c := Defaults()
	c.Listen = "0.0.0.0:8443"
	c.Upstream = []string{"http://nexus:8081/nexus/"}
	c.Cert = []string{c1, c2}
	c.Key = []string{k1, k2}
	c.Route = []string{
		"registry.example.com=team-a",
		"Team-B.Example.COM.=pull:team-b,push:team-b-hosted",
		"*.example.com=wild",
		"example.com=apex",
	}
	c.Port = []string{"8082=team-a"}
	c.DefaultRoute = "fallback"
	c.Passthrough = []string{"git.other.org=10.0.0.5:443"} // brings its own certificate
	c.HandshakeTimeout = 10 * time.Second
	c.ProxyProtocolFrom = []string{"10.0.0.0/8", " 192.168.1.5 ", "2001:db8::/32"}
	c.PassthroughProxyProtocol = "v2"
	b, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	if b.ProxyPolicy == nil || b.PassthroughProxyHeader != 2 {
		t.Errorf("ProxyPolicy set %v, PassthroughProxyHeader %d", b.ProxyPolicy != nil, b.PassthroughProxyHeader)
	}
	if b.ListenPort != 8443 {
		t.Errorf("ListenPort = %d", b.ListenPort)
	}
	if b.Table.Len() != 7 {
		t.Errorf("%d routes, want 7: %v", b.Table.Len(), b.Table.Routes())
	}
	if got := b.Upstreams.ContextPath(); got != "/nexus" {
		t.Errorf("ContextPath = %q", got)
	}
	if b.Certs.Len() != 3 {
		t.Errorf("Certs.Len = %d, want 3", b.Certs.Len())
	}
	d := b.Describe()
	for _, want := range []string{
		"listen 0.0.0.0:8443 -> nexus http://nexus:8081/nexus/ (context path /nexus)",
		fmt.Sprintf("  %-32s %s\n", "registry.example.com", "/nexus/repository/team-a/"),
		fmt.Sprintf("  %-32s %s\n", "team-b.example.com", "pull /nexus/repository/team-b/, push /nexus/repository/team-b-hosted/"),
		fmt.Sprintf("  %-32s %s\n", "*.example.com", "/nexus/repository/wild/"),
		fmt.Sprintf("  %-32s %s\n", "git.other.org", "passthrough to 10.0.0.5:443"),
		fmt.Sprintf("  %-32s %s\n", ":8082", "/nexus/repository/team-a/"),
		fmt.Sprintf("  %-32s %s\n", "default", "/nexus/repository/fallback/"),
		"certificates: registry.example.com, *.example.com, example.com",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe() lacks %q:\n%s", want, d)
		}
	}
}

// Limits that let one client address hold every connection to a Nexus
// node draw a warning; the defaults do not. Any per-client limit keeps one
// address to half a node's connections (l7's shares), however high.
func TestBuildWarnsOfLimitsThatLeaveNexusOpen(t *testing.T) {
	for _, tc := range []struct {
		perClient, perNode int
		want               string
	}{
		{DefaultMaxRequestsPerClient, 0, ""},
		{0, 0, "max-requests-per-client 0 (no limit): one client address can hold all 200 connections"},
		{200, 0, ""},
		{8, 8, ""},
		{7, 8, ""},
	} {
		c := Defaults()
		c.Port = []string{"8082=team-a"}
		c.MaxRequestsPerClient, c.UpstreamMaxConns = tc.perClient, tc.perNode
		b, err := c.Build()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(b.Warnings, "\n")
		if tc.want == "" && strings.Contains(got, "max-requests-per-client") || !strings.Contains(got, tc.want) {
			t.Errorf("per client %d, per node %d: warnings %q, want %q", tc.perClient, tc.perNode, got, tc.want)
		}
	}
}

// Every limit whose 0 turns it off (README: "0: no limit", "0: never")
// warns of that 0, once, in the words of max-requests-per-client's; a
// setting whose 0 is its built-in default (upstream-max-conns,
// header-timeout, ...) or a normal choice (max-conn-age,
// idle-release-after, shutdown-delay) draws none.
func TestBuildWarnsOfEveryLimitTurnedOff(t *testing.T) {
	warns := map[string]string{
		"max-conns":               "max-conns 0 (no limit): connections are taken until nexmux runs out of file descriptors",
		"max-conns-per-client":    "max-conns-per-client 0 (no limit): one client address can hold all",
		"max-requests-per-client": "max-requests-per-client 0 (no limit): one client address can hold all 200 connections",
		"body-timeout":            "body-timeout 0 (never): a client that stops sending a request body holds its connection to a Nexus node",
		"send-timeout":            "send-timeout 0 (never): a client that stops reading a response holds its connection",
	}
	build := func(c *Config) []string {
		c.Port = []string{"8082=team-a"}
		b, err := c.Build()
		if err != nil {
			t.Fatal(err)
		}
		return b.Warnings
	}
	if w := build(Defaults()); len(w) > 0 {
		t.Fatalf("the defaults warn: %q", w)
	}
	seen := 0
	for _, s := range Settings() {
		var zero any
		switch s.Default().(type) {
		case int:
			zero = 0
		case time.Duration:
			zero = time.Duration(0)
		default:
			continue
		}
		c := Defaults()
		s.Set(c, zero)
		got := build(c)
		want, ok := warns[s.Name]
		switch {
		case !ok && len(got) > 0:
			t.Errorf("%s 0: warnings %q, want none", s.Name, got)
		case ok && (len(got) != 1 || !strings.HasPrefix(got[0], want)):
			t.Errorf("%s 0: warnings %q, want one starting %q", s.Name, got, want)
		}
		if ok {
			seen++
		}
	}
	if seen != len(warns) {
		t.Errorf("%d of the %d settings that warn are int or duration settings", seen, len(warns))
	}
	// Both connection limits off: each says so, the per-client one
	// without a number of places.
	c := Defaults()
	c.MaxConns, c.MaxConnsPerClient = 0, 0
	if got := build(c); len(got) != 2 || !strings.HasSuffix(got[1], "one client address can hold every connection nexmux takes") {
		t.Errorf("max-conns 0 and max-conns-per-client 0: warnings %q", got)
	}
}

func TestBuildPortRoutesNeedNoCert(t *testing.T) {
	c := Defaults()
	c.Port = []string{"8082=team-a", "8083=pull:g,push:h"}
	c.Passthrough = []string{"git.example.com=10.0.0.5:443"}
	if _, err := c.Build(); err != nil {
		t.Fatal(err)
	}
}

// TestBuildReportsEverything: six different mistakes, six lines, one Build.
func TestBuildReportsEverything(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "wild", "*.example.com")
	c := Defaults()
	c.Cert, c.Key = []string{cert}, []string{key}
	c.Listen = "8443"                             // 1 no colon
	c.MetricsListen = "metrics"                   // 2 not HOST:PORT
	c.Upstream = []string{"ftp://nexus:8081"}     // 3 scheme
	c.Route = []string{"a.example.com=../team-a"} // 4 repository name
	c.HandshakeTimeout = -time.Second             // 5 negative
	c.LogFormat = "xml"                           // 6 unknown format
	_, err := c.Build()
	wantProblems(t, err, `listen "8443"`, `metrics-listen "metrics"`, `upstream "ftp://nexus:8081"`, `route "a.example.com=../team-a"`, "handshake-timeout -1s", `log-format "xml"`)
}

func TestBuildProblems(t *testing.T) {
	dir := t.TempDir()
	wildCert, wildKey := writeCert(t, dir, "wild", "*.example.com")
	otherCert, otherKey := writeCert(t, dir, "other", "other.org")
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want []string
	}{
		{"no routes", func(c *Config) { c.Route = nil }, []string{"no routes"}},
		// 1ns made the prober a tight loop of status requests to every node.
		{"health interval too short", func(c *Config) { c.HealthInterval = time.Millisecond }, []string{"health-interval 1ms: under 100ms"}},
		{"one address for three listeners", func(c *Config) {
			c.Listen, c.MetricsListen, c.Socks5Listen = "127.0.0.1:27500", "127.0.0.1:27500", ":27500"
		}, []string{"metrics-listen 127.0.0.1:27500: the same address as listen", "socks5-listen :27500: the same address as listen", "socks5-listen :27500: the same address as metrics-listen"}},
		{"a bound port route on the metrics address", func(c *Config) {
			c.Listen, c.BindPorts, c.Port, c.MetricsListen = "127.0.0.1:27501", true, []string{"27502=team-a"}, "127.0.0.1:27502"
		}, []string{"port 27502 (--bind-ports) 127.0.0.1:27502: the same address as metrics-listen"}},
		{"no certificate for TLS routes", func(c *Config) { c.Cert, c.Key = nil, nil }, []string{"no certificate"}},
		{"no certificate for the default route", func(c *Config) {
			c.Cert, c.Key, c.Route, c.DefaultRoute = nil, nil, nil, "fallback"
		}, []string{"no certificate"}},
		{"cert without key", func(c *Config) { c.Key = nil }, []string{"1 --cert but 0 --key"}},
		{"missing files", func(c *Config) {
			c.Cert = append(c.Cert, filepath.Join(dir, "nope.crt"))
			c.Key = append(c.Key, filepath.Join(dir, "nope.key"))
		}, []string{"open " + filepath.Join(dir, "nope.crt"), "open " + filepath.Join(dir, "nope.key")}}, // each path its own problem
		{"key of another certificate", func(c *Config) { c.Key = []string{otherKey} }, []string{"private key does not match"}},
		{"two bad pairs, two problems", func(c *Config) {
			c.Cert = []string{wildCert, otherCert, wildCert}
			c.Key = []string{otherKey, wildKey, wildKey}
		}, []string{wildCert + `" / key "` + otherKey, otherCert + `" / key "` + wildKey}},
		{"listen port is not a port", func(c *Config) { c.Listen = ":https8" }, []string{`":https8"`}},
		{"listen port out of range", func(c *Config) { c.Listen = ":70000" }, []string{`":70000"`}},
		// strconv.Atoi takes a sign, and net.Listen then binds ":+8443";
		// ":-0" was any free port. A port is digits only, written as it is
		// compared (listen clashes compare the text).
		{"listener ports with a sign or a leading zero, each listed", func(c *Config) {
			c.Listen, c.MetricsListen, c.Socks5Listen = ":+8443", "127.0.0.1:09090", ":-0"
		}, []string{`listen ":+8443": "+8443" is not a port`, `metrics-listen "127.0.0.1:09090": "09090" is not a port`, `socks5-listen ":-0": "-0" is not a port`}},
		{"lax port routes listed with the rest", func(c *Config) {
			c.Port = []string{"+8082=team-x", "8083=team-y"}
			c.Passthrough = []string{"legacy.example.com=127.0.0.1:+8444"}
			c.Listen = ":08443"
		}, []string{`port "+8082=team-x"`, `passthrough "legacy.example.com=127.0.0.1:+8444"`, `listen ":08443"`}},
		// net.Listen looks the host up as written: " :8443" (a YAML or
		// environment value with a blank) passed check and failed serve
		// with "lookup  : no such host".
		{"listener hosts no lookup can find, each listed", func(c *Config) {
			c.Listen, c.MetricsListen, c.Socks5Listen = " :8443", "127.0.0.1 :9090", "exämple.com:1080"
		}, []string{`listen " :8443": " " is not a host name or IP address`, `metrics-listen "127.0.0.1 :9090": "127.0.0.1 " is not a host name or IP address`,
			`socks5-listen "exämple.com:1080": "exämple.com" is not a host name or IP address`}},
		// Each passed check and failed serve at bind: the zone "25eth0"
		// (copied from a URL) names no interface, Go reads no IPv4
		// address with a leading zero (it looks "127.0.0.01" up in DNS),
		// and an interface name holds no '@'.
		{"listener addresses bind would refuse, each listed", func(c *Config) {
			c.Listen, c.Socks5Listen, c.MetricsListen = "[fe80::1%25eth0]:8443", "127.0.0.01:1080", "[fe80::1%eth0@x]:9090"
		}, []string{`listen "[fe80::1%25eth0]:8443": zone "%25eth0" is written as in a URL: write it [fe80::1%eth0]:8443`,
			`socks5-listen "127.0.0.01:1080": "127.0.0.01" is not a host name or IP address`,
			`metrics-listen "[fe80::1%eth0@x]:9090": zone "eth0@x" is not an interface name`}},
		{"port route on the listen port", func(c *Config) { c.Port = []string{"8443=team-a"} }, []string{"--listen port"}},
		{"no upstream", func(c *Config) { c.Upstream = nil }, []string{"at least one Nexus"}},
		{"upstream with credentials", func(c *Config) { c.Upstream = []string{"http://admin:admin123@nexus:8081"} }, []string{"no query, fragment or credentials"}},
		{"upstream ports out of range, each listed", func(c *Config) {
			c.Upstream = []string{"http://n1:99999", "http://n2:0", "https://n3:65535"}
		}, []string{`upstream "http://n1:99999": port 99999 is not 1-65535`, `upstream "http://n2:0": port 0 is not 1-65535`}},
		// Two replicas writing one node as :8081 and :08081 would derive
		// different node ids (upload affinity tags).
		{"upstream port with a leading zero", func(c *Config) {
			c.Upstream = []string{"http://n1:08081", "http://n2:8081"}
		}, []string{`upstream "http://n1:08081": port 08081`}},
		{"upstreams with different context paths", func(c *Config) { c.Upstream = []string{"http://n1:8081/nexus", "http://n2:8081/"} }, []string{"context path"}},
		{"HA settings, every problem at once", func(c *Config) {
			short := filepath.Join(dir, "short.secret")
			if err := os.WriteFile(short, []byte("tiny\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c.Upstream = []string{"http://n1:8081", "ftp://n2:8081", "http://N1:8081/"}
			c.DrainUpstream = []string{"http://n9:8081"}
			c.AffinitySecretFile, c.HealthInterval, c.UpstreamMaxConns = short, -time.Second, -1
		}, []string{`upstream "ftp://n2:8081"`, "listed twice", `drain-upstream "http://n9:8081"`, "at least 16 bytes", "health-interval -1s", "upstream-max-conns -1"}},
		{"files too large to be what they are named for, each listed", func(c *Config) {
			// A path naming a huge file or a device (/dev/zero) by
			// mistake: read whole, each reload would grow the process
			// until the kernel killed it.
			big := filepath.Join(dir, "big")
			if err := os.WriteFile(big, bytes.Repeat([]byte("# comment\n"), 17<<20/10), 0o600); err != nil {
				t.Fatal(err)
			}
			c.Socks5Listen, c.Socks5AuthFile = "127.0.0.1:1080", big
			c.Mirror, c.MirrorAuthFile = []string{"mirror.example.com/docker.io=dockerhub-proxy"}, big
			c.AffinitySecretFile = big
			c.Cert, c.Key = []string{wildCert, big}, []string{wildKey, wildKey}
		}, []string{"socks5-auth-file: " + filepath.Join(dir, "big") + ": larger than 16 MiB", "mirror-auth-file: " + filepath.Join(dir, "big") + ": larger than 16 MiB",
			"affinity-secret-file: " + filepath.Join(dir, "big") + ": larger than 16 MiB", `cert "` + filepath.Join(dir, "big") + `" / key "` + wildKey + `": ` + filepath.Join(dir, "big") + ": larger than 16 MiB"}},
		{"several route problems, one line each", func(c *Config) {
			c.Route = []string{"a.example.com=x", "A.example.com.=y", "*.com=z", "10.0.0.1=w"}
		}, []string{"already routed", "top-level domain", "IP address"}},
		{"negative durations and limits", func(c *Config) {
			c.HeaderTimeout, c.IdleTimeout, c.DrainTimeout, c.MaxConns, c.IdleRelease = -1, -time.Minute, -time.Hour, -5, -time.Second
		}, []string{"header-timeout", "idle-timeout", "idle-release-after -1s", "drain-timeout", "max-conns -5"}},
		{"negative hardening durations", func(c *Config) {
			c.PassthroughIdleTimeout, c.MaxConnAge, c.BodyTimeout, c.SendTimeout = -1, -time.Minute, -time.Second, -2*time.Second
		}, []string{"passthrough-idle-timeout", "max-conn-age -1m0s", "body-timeout -1s", "send-timeout -2s"}},
		{"IPv6 client prefix out of range", func(c *Config) { c.PerClientIPv6Prefix = 129 }, []string{"per-client-ipv6-prefix 129: must be 1 to 128"}},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, []string{`log-level "loud"`}},
		{"proxy-protocol-from, two bad entries", func(c *Config) {
			c.ProxyProtocolFrom = []string{"10.0.0.0/8", "lb.example.com", "10.0.0.0/33"}
		}, []string{`"lb.example.com"`, `"10.0.0.0/33"`}},
		{"passthrough-proxy-protocol unknown", func(c *Config) {
			c.PassthroughProxyProtocol, c.Passthrough = "v3", []string{"git.example.com=10.0.0.5:443"}
		}, []string{`passthrough-proxy-protocol "v3"`}},
		{"passthrough-proxy-protocol without passthrough", func(c *Config) { c.PassthroughProxyProtocol = "v1" }, []string{"no --passthrough route"}},
		{"socks5-auth-file without socks5-listen", func(c *Config) { c.Socks5AuthFile = filepath.Join(dir, "socks5-users") }, []string{"socks5-auth-file is set but socks5-listen is not"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.Cert, c.Key = []string{wildCert}, []string{wildKey}
			c.Route = []string{"team-a.example.com=team-a"}
			tc.edit(c)
			b, err := c.Build()
			if b != nil {
				t.Error("Build returned a result with an error")
			}
			wantProblems(t, err, tc.want...)
		})
	}
}

func TestBuildLogSettingsAccepted(t *testing.T) {
	for _, f := range []string{"", "text", "json"} {
		for _, l := range []string{"", "debug", "INFO", "Warn", "error"} {
			c := Defaults()
			c.Port = []string{"8082=team-a"}
			c.LogFormat, c.LogLevel = f, l
			if _, err := c.Build(); err != nil {
				t.Errorf("log-format %q log-level %q: %v", f, l, err)
			}
		}
	}
}

// A listener's host is what net.Listen binds as written: an IPv4 address
// in Go's form (no leading zero, four parts), a zone that is an interface
// name or index; a name whose last label is digits is no host name but an
// IPv4 address Go does not read, and no lookup finds it.
func TestListenerHostForms(t *testing.T) {
	for _, addr := range []string{":0", "127.0.0.1:0", "localhost:0", "[::1]:0", "[fe80::1%eth0]:0", "[fe80::1%eth0.100]:0", "[fe80::1%br-lan_1]:0", "[fe80::1%2]:0", "[fe80::1%25]:0"} {
		if _, err := addrPort("listen", addr); err != nil {
			t.Errorf("listen %s: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.01:0", "127.1:0", "2130706433:0", "127.0.0.1.:0", "999.0.0.1:0", "host.123:0", "[fe80::1%eth 0]:0", "[fe80::1%eth0/1]:0", "[fe80::1%25lo]:0"} {
		if _, err := addrPort("listen", addr); err == nil {
			t.Errorf("listen %s: accepted, but bind fails", addr)
		}
	}
}

// TestBuildCertCoverage: a TLS route no certificate names would make every
// client of that route fail verification on the fallback certificate.
func TestBuildCertCoverage(t *testing.T) {
	dir := t.TempDir()
	wildCert, wildKey := writeCert(t, dir, "wild", "*.example.com")
	exactCert, exactKey := writeCert(t, dir, "exact", "registry.other.org", "Legacy.Other.ORG.")
	c := Defaults()
	c.Cert = []string{wildCert, exactCert}
	c.Key = []string{wildKey, exactKey}
	c.Route = []string{
		"team-a.example.com=a",     // covered by *.example.com
		"*.example.com=any",        // covered: one label under it
		"registry.other.org=r",     // covered exactly
		"legacy.other.org=l",       // covered, SAN was mixed case with a trailing dot
		"example.com=apex",         // NOT covered: a wildcard does not cover its apex
		"a.b.example.com=deep",     // NOT covered: a wildcard covers one label
		"*.b.example.com=deepwild", // NOT covered
		"nexus.other.org=n",        // NOT covered
	}
	c.Port = []string{"8082=a"}                          // port routes are not checked
	c.Passthrough = []string{"git.else.net=10.0.0.1:22"} // brings its own TLS
	c.DefaultRoute = "fallback"                          // gets the first certificate
	_, err := c.Build()
	wantProblems(t, err, "route example.com:", "route a.b.example.com:", "route *.b.example.com:", "route nexus.other.org:")
	for _, l := range problems(t, err) {
		if !strings.Contains(l, "no --cert covers this name") {
			t.Errorf("unexpected problem %q", l)
		}
	}
}

func TestBuildProxyProtocolDefaults(t *testing.T) {
	for v, want := range map[string]byte{"": 0, "none": 0, "v1": 1, "v2": 2} {
		c := Defaults()
		c.Passthrough = []string{"git.example.com=10.0.0.5:443"}
		c.PassthroughProxyProtocol = v
		b, err := c.Build()
		if err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if b.PassthroughProxyHeader != want || b.ProxyPolicy != nil {
			t.Errorf("%q: header %d, policy %v", v, b.PassthroughProxyHeader, b.ProxyPolicy != nil)
		}
	}
}

// TestPortRoutes: `nexmux iptables` validates only --listen and --port, with
// no certificates around; host routes and certificate problems are not its
// business.
func TestPortRoutes(t *testing.T) {
	c := Defaults()
	c.Listen = ":8443"
	c.Port = []string{"8082=team-a", "8083=pull:team-b,push:team-b-hosted"}
	c.Route = []string{"not covered by any cert=../x"}
	c.Cert = []string{"/nonexistent.crt"}
	lp, tab, err := c.PortRoutes()
	if err != nil {
		t.Fatal(err)
	}
	if lp != 8443 || tab.Len() != 2 || tab.LookupPort(8083) == nil || tab.LookupHost("a.example.com") != nil {
		t.Errorf("PortRoutes = %d, %v", lp, tab.Routes())
	}

	c = Defaults()
	c.Listen = "8443"
	c.Port = []string{"0=x", "8082=a/b", "8082=ok", "8082=dup"}
	_, tab, err = c.PortRoutes()
	if tab != nil {
		t.Error("table returned with an error")
	}
	wantProblems(t, err, `listen "8443"`, `port "0=x"`, `port "8082=a/b"`, `port "8082=dup"`)

	for _, listen := range []string{":0", ":65536", ":x"} {
		c = Defaults()
		c.Listen = listen
		if _, _, err := c.PortRoutes(); err == nil {
			t.Errorf("PortRoutes accepted listen %q", listen)
		}
	}
	c = Defaults()
	c.Port = []string{"8443=x"}
	_, _, err = c.PortRoutes()
	wantProblems(t, err, "--listen port")
}

// TestBuildBadRouteHidesNothing: the checks that read the route table
// (certificate coverage, a --bind-ports port on another listener's address)
// still run over the valid routes when another route is invalid, so a user
// sees every problem in one run, not one more after each fix.
func TestBuildBadRouteHidesNothing(t *testing.T) {
	dir := t.TempDir()
	wildCert, wildKey := writeCert(t, dir, "wild", "*.example.com")
	c := Defaults()
	c.Cert, c.Key = []string{wildCert}, []string{wildKey}
	c.Listen, c.MetricsListen, c.BindPorts = "127.0.0.1:27510", "127.0.0.1:27511", true
	c.Route = []string{
		"team-a.example.com=team-a",
		"nexus.other.org=n",           // NOT covered by *.example.com
		"team-b.example.com=bad repo", // invalid repository name
	}
	c.Mirror = []string{"mirror.other.org/docker.io=dockerhub-proxy"} // NOT covered
	c.Port = []string{"27511=team-a", "x=team-a"}                     // on the metrics address; not a port
	_, err := c.Build()
	wantProblems(t, err,
		`route "team-b.example.com=bad repo"`,
		`port "x=team-a"`,
		"route nexus.other.org: no --cert covers this name",
		"mirror mirror.other.org: no --cert covers this name",
		"port 27511 (--bind-ports) 127.0.0.1:27511: the same address as metrics-listen")
}

// TestBuildCertCoverageNamesTheMirrorFlag: a mirror name no certificate
// covers is reported as a --mirror, the flag the user wrote, not as a route
// their configuration does not hold.
func TestBuildCertCoverageNamesTheMirrorFlag(t *testing.T) {
	dir := t.TempDir()
	wildCert, wildKey := writeCert(t, dir, "wild", "*.example.com")
	c := Defaults()
	c.Cert, c.Key = []string{wildCert}, []string{wildKey}
	c.Mirror = []string{"mirror.other.org/docker.io=dockerhub-proxy", "mirror.other.org/ghcr.io=ghcr-proxy", "*.m.other.org/quay.io=quay-proxy"}
	_, err := c.Build()
	wantProblems(t, err, "mirror mirror.other.org: no --cert covers this name", "mirror *.m.other.org: no --cert covers this name")
}

// TestListenClashesAcrossIPSpellings: one address written two ways
// ("[::1]" and "[0:0::1]", an IPv4-mapped "[::ffff:127.0.0.1]" and
// "127.0.0.1", the long unspecified "[0:0:0:0:0:0:0:0]") is one bind: check
// must refuse it as serve's second bind would fail.
func TestListenClashesAcrossIPSpellings(t *testing.T) {
	for _, tc := range []struct {
		listen, metrics string
		clash           bool
	}{
		{"[::1]:27530", "[0:0::1]:27530", true},
		{"127.0.0.1:27531", "[::ffff:127.0.0.1]:27531", true},
		{"[0:0:0:0:0:0:0:0]:27532", "127.0.0.1:27532", true},
		{"[::ffff:0.0.0.0]:27533", "127.0.0.1:27533", true},
		{"[FD00::2]:27534", "[fd00::2]:27534", true},
		{"[::1]:27535", "127.0.0.1:27535", false},
		{"[fe80::1%eth0]:27536", "[fe80::1%eth1]:27536", false},
	} {
		c := Defaults()
		c.Port = []string{"8082=team-a"}
		c.Listen, c.MetricsListen = tc.listen, tc.metrics
		_, err := c.Build()
		got := err != nil && strings.Contains(err.Error(), "the same address as listen")
		if got != tc.clash {
			t.Errorf("listen %s, metrics-listen %s: clash reported %v, want %v (err %v)", tc.listen, tc.metrics, got, tc.clash, err)
		}
	}
}

// --max-conns-per-client defaults from --max-conns' default, not from a
// --max-conns the user gave: lowered below it, one client address may take
// every place, which the per-client cap exists to prevent. That draws a
// warning, as the like limit of requests does.
func TestBuildWarnsOfPerClientCapNotBelowMaxConns(t *testing.T) {
	for _, tc := range []struct {
		maxConns, perClient int
		want                string
	}{
		{DefaultMaxConns, DefaultMaxConnsPerClient, ""},
		{100, DefaultMaxConnsPerClient, fmt.Sprintf("max-conns-per-client %d is not below max-conns 100", DefaultMaxConnsPerClient)},
		{100, 100, "max-conns-per-client 100 is not below max-conns 100"},
		{100, 99, ""},
		{0, 500, ""}, // no total limit: nothing to take all of (max-conns 0 warns of itself)
		// No per-client limit: warned of as such (TestBuildWarnsOfEveryLimitTurnedOff).
		{100, 0, "max-conns-per-client 0 (no limit): one client address can hold all 100 connection places (max-conns)"},
	} {
		c := Defaults()
		c.Port = []string{"8082=team-a"}
		c.MaxConns, c.MaxConnsPerClient = tc.maxConns, tc.perClient
		b, err := c.Build()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(b.Warnings, "\n")
		if tc.want == "" && strings.Contains(got, "max-conns-per-client") || !strings.Contains(got, tc.want) {
			t.Errorf("max-conns %d, per client %d: warnings %q, want %q", tc.maxConns, tc.perClient, got, tc.want)
		}
	}
}

// TestListenClashesByHostName: a listen address written with a host name
// binds the address the name resolves to (Go's net.Listen takes its first
// IPv4 address, else its first), so "localhost:P" and "127.0.0.1:P" are
// one bind. check's verdict must be what binding both does: the second
// bind fails exactly where a clash is reported.
func TestListenClashesByHostName(t *testing.T) {
	for _, tc := range [][2]string{
		{"localhost", "127.0.0.1"},
		{"LocalHost", "localhost"},
		{"localhost", "::1"},
		{"localhost", ""},
		{"127.0.0.1", "localhost"},
		{"nexmux-no-such-host.invalid", "127.0.0.1"},
	} {
		// A free port for this pair.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		listen, metrics := net.JoinHostPort(tc[0], port), net.JoinHostPort(tc[1], port)

		// Each alone binds, or the pair says nothing (no ::1 here, a
		// name that does not resolve: serve reports those itself).
		alone := func(addr string) bool {
			l, err := net.Listen("tcp", addr)
			if err == nil {
				l.Close()
			}
			return err == nil
		}
		if !alone(listen) || !alone(metrics) {
			t.Logf("%s or %s cannot be bound here", listen, metrics)
			continue
		}
		first, err := net.Listen("tcp", listen)
		bindFails := false
		if err == nil {
			second, err := net.Listen("tcp", metrics)
			bindFails = err != nil
			if second != nil {
				second.Close()
			}
			first.Close()
		}

		c := Defaults()
		c.Port = []string{"8082=team-a"}
		c.Listen, c.MetricsListen = listen, metrics
		_, err = c.Build()
		clash := err != nil && strings.Contains(err.Error(), "the same address as listen")
		if clash != bindFails {
			t.Errorf("listen %s, metrics-listen %s: clash reported %v, but binding both fails: %v (err %v)", listen, metrics, clash, bindFails, err)
		}
	}
}

// TestPassthroughToOwnListenerRefused: a passthrough backend that is
// nexmux's own --listen address sends each stream back into nexmux, where
// the same server name picks the same passthrough again: one client
// connection becomes a loop of connections until --max-conns-per-client
// refuses one. check must refuse it as it refuses a bind clash; another
// port, or another host's address, is a backend like any other.
func TestPassthroughToOwnListenerRefused(t *testing.T) {
	local := localIPv4()
	cases := []struct {
		listen, backend string
		loop            bool
	}{
		{":8443", "127.0.0.1:8443", true},
		{":8443", "[::1]:8443", true},
		{":8443", "localhost:8443", true},
		{":8443", "0.0.0.0:8443", true},
		{"0.0.0.0:8443", "127.0.0.2:8443", true},
		{"0.0.0.0:8443", "0.0.0.0:8443", true},
		{"0.0.0.0:8443", "[::1]:8443", true}, // Go listens on [::] for 0.0.0.0
		{"127.0.0.1:8443", "127.0.0.1:8443", true},
		{"127.0.0.1:8443", "[::ffff:127.0.0.1]:8443", true},
		{"127.0.0.1:8443", "127.0.0.2:8443", false},
		{":8443", "127.0.0.1:9443", false},
		{":8443", "192.0.2.7:8443", false},
		{"192.0.2.5:8443", "127.0.0.1:8443", false},
	}
	if local != "" {
		cases = append(cases, struct {
			listen, backend string
			loop            bool
		}{":8443", net.JoinHostPort(local, "8443"), true})
	}
	for _, tc := range cases {
		c := Defaults()
		c.Listen = tc.listen
		c.Passthrough = []string{"legacy.example.com=" + tc.backend}
		_, err := c.Build()
		got := err != nil && strings.Contains(err.Error(), "nexmux's own --listen")
		if got != tc.loop {
			t.Errorf("listen %s, passthrough to %s: loop reported %v, want %v (err %v)", tc.listen, tc.backend, got, tc.loop, err)
		}
	}
}

// TestOwnLinkLocalAddressIsALoop: a link-local IPv6 address of this host,
// written with its interface as zone (the only way to dial one), is as much
// a local address of a wildcard listener as any other: a passthrough
// backend or --upstream node there comes back to nexmux, and a --port
// route's REDIRECT of it loops.
func TestOwnLinkLocalAddressIsALoop(t *testing.T) {
	if ll := localLinkLocal(); ll != "" {
		ownLinkLocalIsALoop(t, ll)
		return
	}
	inLinkLocalNetns(t, func(ll string) { ownLinkLocalIsALoop(t, ll) })
}

// ownLinkLocalIsALoop checks TestOwnLinkLocalAddressIsALoop's points with
// ll, a link-local address of this host (zoned), on the calling thread's
// network namespace. Errorf only: it may run on a thread netns.Do switched.
func ownLinkLocalIsALoop(t *testing.T, ll string) {
	c := Defaults()
	c.Listen = ":8443"
	c.Passthrough = []string{"legacy.example.com=" + net.JoinHostPort(ll, "8443")}
	c.Upstream = []string{"http://" + net.JoinHostPort(strings.Replace(ll, "%", "%25", 1), "8443")}
	_, err := c.Build()
	for _, want := range []string{"passthrough legacy.example.com=", "upstream http://"} {
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "nexmux's own --listen") {
			t.Errorf("listen :8443, backends at %s port 8443: %v, want %q... reported as nexmux's own --listen", ll, err, want)
		}
	}
	c = backendConfig(":8443", []string{"8082=team-a"}, false, "", "legacy.example.com="+net.JoinHostPort(ll, "8082"))
	if errs := c.RedirectLoops([]int{8082}); len(errs) != 1 {
		t.Errorf("passthrough to %s port 8082 with --port 8082: %v, want the redirect loop", ll, errs)
	}
}

// localLinkLocal is a link-local IPv6 address of this host with its
// interface as zone ("fe80::1%eth0"), or "".
func localLinkLocal() string {
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() == nil && n.IP.IsLinkLocalUnicast() {
				return n.IP.String() + "%" + ifc.Name
			}
		}
	}
	return ""
}

// TestBuildWarnsOfRedirectLoops: the OUTPUT rule of `nexmux iptables`
// REDIRECTs every connection this host makes to a --port port on a local
// address, nexmux's own too. An --upstream node or a passthrough backend
// there is reached by nexmux's listener instead, routed by that port to the
// same backend, and so on. Build warns (port routes also work without the
// rules); nexmux iptables refuses (cmd/nexmux).
func TestBuildWarnsOfRedirectLoops(t *testing.T) {
	local := localIPv4()
	type tc struct {
		upstream, passthrough string
		bindPorts             bool
		want                  string // "": no warning
	}
	cases := []tc{
		{upstream: "http://127.0.0.1:8082", want: "upstream http://127.0.0.1:8082 is on this host, at port 8082 of a --port route"},
		{upstream: "http://localhost:8083/nexus", want: "upstream http://localhost:8083/nexus is on this host, at port 8083"},
		{upstream: "http://[::1]:8082", want: "upstream http://[::1]:8082 is on this host"},
		{upstream: "http://0.0.0.0:8082", want: "upstream http://0.0.0.0:8082 is on this host"},
		{upstream: "http://127.0.0.1", want: "upstream http://127.0.0.1 is on this host, at port 80"}, // the scheme's port
		{passthrough: "legacy.example.com=127.0.0.1:8083", want: "passthrough legacy.example.com=127.0.0.1:8083: 127.0.0.1:8083 is on this host, at port 8083"},
		{upstream: "http://127.0.0.1:8081"},                // another port
		{upstream: "http://192.0.2.7:8082"},                // another host
		{passthrough: "legacy.example.com=192.0.2.7:8083"}, // another host
		// With --bind-ports there are no rules: nexmux binds the port itself,
		// and a backend there is refused (TestBackendOnOwnListenerRefused).
		{passthrough: "legacy.example.com=[::1]:8084", want: ""}, // no route on 8084
		{upstream: "http://127.0.0.1:8082", passthrough: "x.example.com=127.0.0.1:8083", want: "upstream http://127.0.0.1:8082 is on this host"},
	}
	if local != "" {
		cases = append(cases, tc{upstream: "http://" + net.JoinHostPort(local, "8082"), want: "upstream http://" + net.JoinHostPort(local, "8082") + " is on this host"})
	}
	for _, tc := range cases {
		c := backendConfig("127.0.0.1:0", []string{"8082=team-a", "8083=team-b", "80=team-c"}, tc.bindPorts, tc.upstream, tc.passthrough)
		b, err := c.Build()
		if err != nil {
			t.Errorf("%+v: %v", tc, err)
			continue
		}
		var loops []string
		for _, w := range b.Warnings {
			if strings.Contains(w, "loop") {
				loops = append(loops, w)
			}
		}
		switch {
		case tc.want == "" && len(loops) > 0:
			t.Errorf("%+v: warned %q", tc, loops)
		case tc.want != "" && (len(loops) == 0 || !strings.Contains(loops[0], tc.want) || !strings.Contains(loops[0], "nexmux iptables refuses")):
			t.Errorf("%+v: warnings %q, want one with %q", tc, b.Warnings, tc.want)
		}
		if tc.upstream != "" && tc.passthrough != "" && tc.want != "" && len(loops) != 2 {
			t.Errorf("%+v: %d loop warnings, want one per backend: %q", tc, len(loops), loops)
		}
	}
}

// TestBackendOnOwnListenerRefused: an --upstream node or a passthrough
// backend at one of nexmux's own listeners (its --listen, or a port it
// binds with --bind-ports) is nexmux itself: each request or stream comes
// back in and is sent on again. check refuses it like a bind clash.
func TestBackendOnOwnListenerRefused(t *testing.T) {
	cases := []struct {
		name                  string
		bindPorts             bool
		upstream, passthrough string
		want                  string // "": no such error
	}{
		{"upstream on a bound port", true, "http://127.0.0.1:8082", "", "upstream http://127.0.0.1:8082 is nexmux's own port 8082 (--bind-ports)"},
		{"upstream by name on a bound port", true, "http://localhost:8082/nexus", "", "is nexmux's own port 8082 (--bind-ports)"},
		{"passthrough on a bound port", true, "", "legacy.example.com=127.0.0.1:8082", "passthrough legacy.example.com=127.0.0.1:8082: 127.0.0.1:8082 is nexmux's own port 8082 (--bind-ports)"},
		{"upstream on the listen port", false, "http://127.0.0.1:8443", "", "upstream http://127.0.0.1:8443 is nexmux's own --listen :8443"},
		{"passthrough on the listen port", false, "", "legacy.example.com=127.0.0.1:8443", "is nexmux's own --listen :8443"},
		{"upstream elsewhere", true, "http://127.0.0.1:8081", "", ""},
		{"upstream on another host", true, "http://192.0.2.7:8082", "", ""},
		{"no bound ports", false, "http://127.0.0.1:8082", "", ""}, // a REDIRECT loop: warned (TestBuildWarnsOfRedirectLoops)
	}
	for _, tc := range cases {
		_, err := backendConfig(":8443", []string{"8082=team-a"}, tc.bindPorts, tc.upstream, tc.passthrough).Build()
		got := err != nil && strings.Contains(err.Error(), "nexmux's own")
		switch {
		case tc.want == "" && got:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err %v, want one with %q", tc.name, err, tc.want)
		}
	}
}

// localIPv4 is an IPv4 address of this host's that is not loopback ("":
// none).
func localIPv4() string {
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return ""
}

// backendConfig is the defaults with listen, port routes and an optional
// --upstream and --passthrough ("": none).
func backendConfig(listen string, ports []string, bindPorts bool, upstream, passthrough string) *Config {
	c := Defaults()
	c.Listen, c.Port, c.BindPorts = listen, ports, bindPorts
	if upstream != "" {
		c.Upstream = []string{upstream}
	}
	if passthrough != "" {
		c.Passthrough = []string{passthrough}
	}
	return c
}

// A --strip-header name with blanks around it is the name: the proxy
// trims them before it strips the header, so check must not refuse what
// the proxy would apply. A blank inside is no header name.
func TestBuildStripHeaderTrimsBlanks(t *testing.T) {
	c := Defaults()
	c.Port = []string{"8082=team-a"}
	c.StripHeader = []string{" X-Other ", "\tX-SSO-User"}
	if _, err := c.Build(); err != nil {
		t.Errorf("strip-header with blanks around: %v", err)
	}
	c.StripHeader = []string{"X Other"}
	if _, err := c.Build(); err == nil || !strings.Contains(err.Error(), `strip-header "X Other": not a header name`) {
		t.Errorf("strip-header \"X Other\": err %v, want it refused", err)
	}
}
