package config

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-multierror"
)

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyFileEveryKey(t *testing.T) {
	p := writeYAML(t, `
# every key is a long flag name
listen: "0.0.0.0:443"
upstream:
  - http://nexus-1:8081/nexus
  - http://nexus-2:8081/nexus
cert: [/etc/nexmux/a.crt, /etc/nexmux/b.crt]
key: [/etc/nexmux/a.key, /etc/nexmux/b.key]
route:
  - a.example.com=team-a
  - "b.example.com=pull:team-b,push:team-b-hosted"
  - "*.dev.example.com=dev"
port: ["8082=team-a", "8083=pull:team-b,push:team-b-hosted"]
default-route: fallback
passthrough: git.example.com=10.0.0.5:443
bind-ports: true
metrics-listen: 127.0.0.1:9090
proxy-protocol-from: [10.0.0.0/8, 192.168.1.5]
passthrough-proxy-protocol: v2
handshake-timeout: 10s
header-timeout: 1m30s
idle-timeout: 2m
idle-release-after: 0s
drain-timeout: 500ms
max-conns: 10000
max-conns-per-client: 50
per-client-ipv6-prefix: 64
max-conn-age: 5m
body-timeout: 90s
send-timeout: 2m
max-requests-per-client: 64
strip-header: [X-SSO-User]
log-format: json
log-level: debug
no-memory-trim: true
# the iptables command's own flags: serve and check ignore them
chain: NEXMUX_B
jumps: false
load: true
delete: true
families: iptables
`)
	c := Defaults()
	if err := c.ApplyFile(p); err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:                   "0.0.0.0:443",
		Upstream:                 []string{"http://nexus-1:8081/nexus", "http://nexus-2:8081/nexus"},
		Cert:                     []string{"/etc/nexmux/a.crt", "/etc/nexmux/b.crt"},
		Key:                      []string{"/etc/nexmux/a.key", "/etc/nexmux/b.key"},
		Route:                    []string{"a.example.com=team-a", "b.example.com=pull:team-b,push:team-b-hosted", "*.dev.example.com=dev"},
		Port:                     []string{"8082=team-a", "8083=pull:team-b,push:team-b-hosted"},
		DefaultRoute:             "fallback",
		Passthrough:              []string{"git.example.com=10.0.0.5:443"},
		BindPorts:                true,
		MetricsListen:            "127.0.0.1:9090",
		ProxyProtocolFrom:        []string{"10.0.0.0/8", "192.168.1.5"},
		PassthroughProxyProtocol: "v2",
		HandshakeTimeout:         10 * time.Second,
		HeaderTimeout:            90 * time.Second,
		IdleTimeout:              2 * time.Minute,
		IdleRelease:              0,
		DrainTimeout:             500 * time.Millisecond,
		MaxConns:                 10000,
		MaxConnsPerClient:        50,
		PerClientIPv6Prefix:      64,
		MaxConnAge:               5 * time.Minute,
		BodyTimeout:              90 * time.Second,
		SendTimeout:              2 * time.Minute,
		MaxRequestsPerClient:     64,
		StripHeader:              []string{"X-SSO-User"},
		LogFormat:                "json",
		LogLevel:                 "debug",
		NoMemoryTrim:             true,
		IptablesChain:            "NEXMUX_B",
		IptablesLoad:             true,
		IptablesDelete:           true,
		IptablesFamilies:         []string{"iptables"},
	}
	c.FileKeys, c.FileLines, c.FileValues = nil, nil, nil // TestApplyFileKeys, TestApplyFileLines
	if !reflect.DeepEqual(c, want) {
		t.Errorf("ApplyFile:\n got %+v\nwant %+v", c, want)
	}
}

// FileKeys lists the keys that gave a value, in file order: an empty key
// gives none, so a flag beside it overrides nothing.
func TestApplyFileKeys(t *testing.T) {
	p := writeYAML(t, "max-conns: 500\nidle-timeout:\nroute: [a.example.com=a]\n")
	c := Defaults()
	if err := c.ApplyFile(p); err != nil {
		t.Fatal(err)
	}
	if want := []string{"max-conns", "route"}; !slices.Equal(c.FileKeys, want) {
		t.Errorf("FileKeys %q, want %q", c.FileKeys, want)
	}
}

// fileCase is a config file and what the configuration read from it
// into the defaults must hold.
type fileCase struct {
	name, yaml string
	check      func(c *Config) bool
}

// checkFileCases reads each case's file and checks it, and with it also,
// when given.
func checkFileCases(t *testing.T, cases []fileCase, also func(*testing.T, *Config)) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			if err := c.ApplyFile(writeYAML(t, tc.yaml)); err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
			if also != nil {
				also(t, c)
			}
		})
	}
}

func TestApplyFileValues(t *testing.T) {
	checkFileCases(t, []fileCase{
		{"scalar for a repeatable flag", "route: a.example.com=team-a\n",
			func(c *Config) bool { return reflect.DeepEqual(c.Route, []string{"a.example.com=team-a"}) }},
		{"scalar keeps its comma (one split target)", "route: \"a.example.com=pull:g,push:h\"\n",
			func(c *Config) bool { return reflect.DeepEqual(c.Route, []string{"a.example.com=pull:g,push:h"}) }},
		{"flow list", "route: [\"a.example.com=team-a\", \"b.example.com=team-b\"]\n",
			func(c *Config) bool {
				return reflect.DeepEqual(c.Route, []string{"a.example.com=team-a", "b.example.com=team-b"})
			}},
		{"list replaces the default, does not append", "upstream: [http://nexus:8081]\n",
			func(c *Config) bool { return reflect.DeepEqual(c.Upstream, []string{"http://nexus:8081"}) }},
		{"empty list clears", "upstream: []\n",
			func(c *Config) bool { return len(c.Upstream) == 0 }},
		{"numbers in a list stay the strings typed", "port: [8082=team-a, 08083=team-b]\n",
			func(c *Config) bool { return reflect.DeepEqual(c.Port, []string{"8082=team-a", "08083=team-b"}) }},
		{"quoted duration", "handshake-timeout: \"10s\"\n",
			func(c *Config) bool { return c.HandshakeTimeout == 10*time.Second }},
		{"compound duration", "idle-timeout: 1h2m3s\n",
			func(c *Config) bool { return c.IdleTimeout == time.Hour+2*time.Minute+3*time.Second }},
		{"zero duration", "drain-timeout: 0s\n",
			func(c *Config) bool { return c.DrainTimeout == 0 }},
		{"negative duration parses (Build refuses it)", "header-timeout: -5s\n",
			func(c *Config) bool { return c.HeaderTimeout == -5*time.Second }},
		{"absent keys keep earlier values", "log-level: warn\n",
			func(c *Config) bool {
				return c.LogLevel == "warn" && c.Listen == ":8443" && c.LogFormat == "text" &&
					reflect.DeepEqual(c.Upstream, []string{"http://127.0.0.1:8081"})
			}},
		{"bool", "bind-ports: false\n",
			func(c *Config) bool { return !c.BindPorts }},
		// Values are what the flag takes: quoted text works as on the
		// command line.
		{"quoted int", "max-conns: \"100\"\n",
			func(c *Config) bool { return c.MaxConns == 100 }},
		{"quoted bool", "bind-ports: \"false\"\n",
			func(c *Config) bool { return !c.BindPorts }},
		{"quoted bool true", "port-tls-only: \"true\"\n",
			func(c *Config) bool { return c.PortTLSOnly }},
		{"bare zero duration", "idle-release-after: 0\n",
			func(c *Config) bool { return c.IdleRelease == 0 }},
		{"leading zero is decimal", "max-conns: 010\n",
			func(c *Config) bool { return c.MaxConns == 10 }},
		{"bool as the flag takes it", "port-tls-only: 1\n",
			func(c *Config) bool { return c.PortTLSOnly }},
		{"empty string", "default-route: \"\"\n",
			func(c *Config) bool { return c.DefaultRoute == "" }},
	}, nil)
}

func TestApplyFileEmpty(t *testing.T) {
	for name, body := range map[string]string{
		"empty":         "",
		"newline":       "\n",
		"comments only": "# nothing configured yet\n# route: []\n",
		"document mark": "---\n",
	} {
		c := Defaults()
		if err := c.ApplyFile(writeYAML(t, body)); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(c, Defaults()) {
			t.Errorf("%s: config changed to %+v", name, c)
		}
	}
}

// Empty documents around the one that holds the settings are nothing to
// lose: generators and templates (Helm, kustomize, cat of several files)
// leave "---" marks before and after, and `...` ends a document. Only a
// second document with content is refused (TestApplyFileErrors).
func TestApplyFileEmptyDocumentsAround(t *testing.T) {
	for name, body := range map[string]string{
		"trailing mark":              "route: [a.example.com=a]\n---\n",
		"leading and trailing marks": "---\nroute: [a.example.com=a]\n---\n",
		"empty first document":       "---\n---\nroute: [a.example.com=a]\n",
		"comment-only document":      "route: [a.example.com=a]\n---\n# end\n",
		"document end marker":        "route: [a.example.com=a]\n...\n",
		"explicit null document":     "route: [a.example.com=a]\n--- ~\n",
	} {
		c := Defaults()
		if err := c.ApplyFile(writeYAML(t, body)); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(c.Route) != 1 || c.Route[0] != "a.example.com=a" {
			t.Errorf("%s: route %q, want [a.example.com=a]", name, c.Route)
		}
	}
}

func TestApplyFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "listen: :8443\nroutes: [a.example.com=team-a]\n", []string{"routes", "not found"}},
		{"config key", "listen: :8443\nconfig: other.yaml\n", []string{"line 2", "cannot name another"}},
		{"flag spelled with underscore", "default_route: x\n", []string{"default_route"}},
		{"flag spelled in camel case", "defaultRoute: x\n", []string{"defaultRoute"}},
		{"nested list", "route: [[a.example.com=team-a]]\n", []string{"want a string"}},
		{"map for a list", "route:\n  a.example.com: team-a\n", []string{"want a string or a list"}},
		// A null item is no string: read as its text, `[~]` would strip a
		// header named "~".
		{"null list item", "strip-header: [X-A, ~]\n", []string{"line 1", "empty item"}},
		{"empty list item", "route:\n  - a.example.com=team-a\n  -\n", []string{"line 3", "empty item"}},
		{"duration without unit", "handshake-timeout: 10\n", []string{"line 1", "want a duration"}},
		// YAML would read these as a float, an octal number and YAML 1.1
		// bools; the flag refuses them, so the file does too.
		{"fraction", "max-conns: 0.5\n", []string{"line 1", `"0.5"`, "whole number"}},
		{"negative fraction", "max-conns: -0.5\n", []string{`"-0.5"`, "whole number"}},
		{"exponent", "max-conns: 1e3\n", []string{`"1e3"`, "whole number"}},
		{"YAML 1.1 bool", "port-tls-only: yes\n", []string{`"yes"`, "want true or false"}},
		// strconv and time.ParseDuration take a sign: "+5" and "-0" are no
		// number a user writes for a limit (a negative one is Build's to
		// refuse, saying so).
		{"int with a plus", "max-conns: +5\n", []string{"line 1", `"+5"`, "whole number"}},
		{"int minus zero", "per-client-ipv6-prefix: -0\n", []string{`"-0"`, "whole number"}},
		{"duration with a plus", "idle-timeout: +30s\n", []string{`"+30s"`, "want a duration"}},
		{"duration minus zero", "drain-timeout: -0s\n", []string{`"-0s"`, "want a duration"}},
		{"a second document", "route: [a.example.com=a]\n---\nroute: [b.example.com=b]\n", []string{"line 2", "second YAML document"}},
		{"a second document after an empty one", "route: [a.example.com=a]\n---\n---\nroute: [b.example.com=b]\n", []string{"line 3", "second YAML document"}},
		{"duration garbage", "idle-timeout: soon\n", []string{"soon"}},
		{"int garbage", "max-conns: many\n", []string{"many"}},
		{"quoted int garbage", "max-conns: \"12x\"\n", []string{"line 1", "12x", "want a whole number"}},
		{"bool garbage", "bind-ports: maybe\n", []string{"maybe"}},
		{"list for a scalar", "log-level: info\nlisten: [\":8443\", \":9443\"]\n", []string{"line 2"}},
		{"not a mapping", "- route\n", []string{"config"}},
		{"broken YAML", "route: [a\n", []string{"config"}},
		{"duplicate key", "listen: :1\nlisten: :2\n", []string{"listen"}},
		// A key that is a list or a mapping names nothing: "field  not
		// found" said so with an empty name.
		{"list as a key", "listen: :1\n? [route]\n: a.example.com=r\n", []string{"line 2", "a key must be a long flag name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeYAML(t, tc.yaml)
			c := Defaults()
			err := c.ApplyFile(p)
			if err == nil {
				t.Fatalf("ApplyFile accepted %q: %+v", tc.yaml, c)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestApplyFileMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.yaml")
	err := Defaults().ApplyFile(p)
	if err == nil || !os.IsNotExist(errorsUnwrapAll(err)) || !strings.Contains(err.Error(), p) {
		t.Errorf("ApplyFile(missing) = %v", err)
	}
}

func errorsUnwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestApplyFileThenBuild: a file holding the same strings as the command
// line, a split target included, builds into the same table.
func TestApplyFileThenBuild(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "wild", "*.example.com")
	p := writeYAML(t, `
listen: ":8443"
upstream: http://nexus:8081
cert: `+cert+`
key: `+key+`
route:
  - a.example.com=pull:team-a,push:team-a-hosted
  - b.example.com=team-b
port: 8082=team-b
`)
	c := Defaults()
	if err := c.ApplyFile(p); err != nil {
		t.Fatal(err)
	}
	b, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	if b.Table.Len() != 3 {
		t.Fatalf("routes %v", b.Table.Routes())
	}
	r := b.Table.LookupHost("a.example.com")
	if r == nil || r.Target.Pull != "team-a" || r.Target.Push != "team-a-hosted" {
		t.Errorf("a.example.com => %v", r)
	}
}

// A file with several problems reports each on its own line, naming the
// file; its valid keys are applied, so that validation can report what is
// wrong with them too (the error keeps the config from being served).
func TestApplyFileListsEveryProblem(t *testing.T) {
	p := writeYAML(t, "listen: [\":1\"]\nroutes: x\nmax-conns: many\nlog-level: debug\nlog-level: warn\n")
	c := Defaults()
	err := c.ApplyFile(p)
	if err == nil {
		t.Fatal("ApplyFile accepted a file with four problems")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"listen: line 1", "line 2: field routes not found", "max-conns: line 3", `line 5: key "log-level" already defined at line 4`}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "config "+p+": ") || !strings.Contains(lines[i], w) {
			t.Errorf("line %d %q: want the file and %q", i, lines[i], w)
		}
	}
	want2 := Defaults()
	want2.LogLevel, want2.FileKeys, want2.FileLines = "debug", []string{"log-level"}, map[string][]int{"log-level": {4, 4}}
	want2.FileValues = map[string]any{"log-level": "debug"}
	if !reflect.DeepEqual(c, want2) {
		t.Errorf("the valid key was not applied, or an invalid one was: %+v", c)
	}
	if Unreadable(err) {
		t.Error("a mapping with bad keys counted as an unreadable file")
	}
}

// A YAML alias (*name) stands for the value its anchor (&name) names, in a
// key's value or a list item: the file is read as the same file written
// out, not refused as "want a single value".
func TestApplyFileAliases(t *testing.T) {
	aliased := writeYAML(t, `
listen: &addr "127.0.0.1:9443"
socks5-listen: *addr
route:
  - &a a.example.com=team-a
  - b.example.com=team-b
passthrough: &pt [git.example.com=10.0.0.5:443]
port: [*a]
default-route: &repo team-c
mirror: *pt
max-conns: &n 7
max-requests-per-client: *n
`)
	plain := writeYAML(t, `
listen: "127.0.0.1:9443"
socks5-listen: "127.0.0.1:9443"
route: [a.example.com=team-a, b.example.com=team-b]
passthrough: [git.example.com=10.0.0.5:443]
port: [a.example.com=team-a]
default-route: team-c
mirror: [git.example.com=10.0.0.5:443]
max-conns: 7
max-requests-per-client: 7
`)
	got, want := Defaults(), Defaults()
	if err := got.ApplyFile(aliased); err != nil {
		t.Fatalf("aliases refused: %v", err)
	}
	if err := want.ApplyFile(plain); err != nil {
		t.Fatal(err)
	}
	got.FileLines, want.FileLines = nil, nil // the files' lines differ
	if !reflect.DeepEqual(got, want) {
		t.Errorf("with aliases\n%+v\nwritten out\n%+v", got, want)
	}
}

// An alias as a key is read as the key written out, as an alias value
// is: it was refused as "not a list or mapping", and a key given twice so
// was not named as given twice.
func TestApplyFileAliasKey(t *testing.T) {
	c := Defaults()
	if err := c.ApplyFile(writeYAML(t, "default-route: &k route\n*k : [a.example.com=team-a]\n")); err != nil {
		t.Errorf("an alias naming route refused: %v", err)
	} else if want := []string{"a.example.com=team-a"}; !slices.Equal(c.Route, want) {
		t.Errorf("route = %q, want %q", c.Route, want)
	}
	err := Defaults().ApplyFile(writeYAML(t, "&k route: [a.example.com=team-a]\n*k : [b.example.com=team-b]\n"))
	if err == nil || !strings.Contains(err.Error(), `line 2: key "route" already defined at line 1`) {
		t.Errorf("route and an alias of it: %v, want the key given twice", err)
	}
}

// An unquoted bracketed IPv6 address (listen: [::]:8443) is a YAML syntax
// error whose own text names no line: the error says which line to quote.
func TestApplyFileUnquotedIPv6Hint(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"route: [a.example.com=r]\nlisten: [::]:8443\n", "line 2: quote a value"},
		{"port:\n  - [2001:db8::1]:8082=team-a\n", "line 2: quote a value"},
	} {
		c := Defaults()
		err := c.ApplyFile(writeYAML(t, tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a hint %q", tc.file, err, tc.want)
		}
	}
	// A flow list of names is no address: no hint on another YAML error.
	c := Defaults()
	if err := c.ApplyFile(writeYAML(t, "route: [a.example.com=r]\nlisten: \":8443\n")); err == nil || strings.Contains(err.Error(), "quote a value") {
		t.Errorf("hint on a file without a bracketed address: %v", err)
	}
	// Quoted, it is read.
	c = Defaults()
	if err := c.ApplyFile(writeYAML(t, "listen: \"[::]:8443\"\n")); err != nil || c.Listen != "[::]:8443" {
		t.Errorf("quoted: %v, listen %q", err, c.Listen)
	}
}

// An IPv6 address unquoted in a flow list ([::1/128], [http://[::1]:8081])
// is a YAML syntax error too ("did not find expected node content"), whose
// text names neither the cause nor the line: the hint says to quote it.
func TestApplyFileUnquotedIPv6InFlowListHint(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"listen: \":8443\"\nproxy-protocol-from: [::1/128]\n", "line 2: quote"},
		{"proxy-protocol-from: [10.0.0.0/8, ::ffff:10.0.0.0/104]\n", "line 1: quote"},
		{"upstream: [http://[::1]:8081]\n", "line 1: quote"},
		{"listen: \":8443\"\n\nmirror: [m.example.com/docker.io=hub, m.example.com/[fd00::5]:5000=corp]\n", "line 3: quote"},
	} {
		c := Defaults()
		err := c.ApplyFile(writeYAML(t, tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a hint %q", tc.file, err, tc.want)
		}
	}
	// Quoted items hold no unquoted address: no hint on another error.
	c := Defaults()
	if err := c.ApplyFile(writeYAML(t, "upstream: [\"http://[::1]:8081\", '::1']\nlisten: \":8443\n")); err == nil || strings.Contains(err.Error(), ": quote") {
		t.Errorf("hint on a file whose list items are quoted: %v", err)
	}
	// Quoted, they are read.
	c = Defaults()
	if err := c.ApplyFile(writeYAML(t, "proxy-protocol-from: [\"::1/128\", \"10.0.0.0/8\"]\nupstream: [\"http://[::1]:8081\"]\n")); err != nil ||
		!slices.Equal(c.ProxyProtocolFrom, []string{"::1/128", "10.0.0.0/8"}) || !slices.Equal(c.Upstream, []string{"http://[::1]:8081"}) {
		t.Errorf("quoted: %v, proxy-protocol-from %q upstream %q", err, c.ProxyProtocolFrom, c.Upstream)
	}
}

// A config file is read whole on every reload: one too large to be a
// configuration (a path naming a device or a huge file by mistake) is
// refused as unreadable instead of read until memory runs out.
func TestApplyFileTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(p, bytes.Repeat([]byte("# comment\n"), 17<<20/10), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	if err := c.ApplyFile(p); err == nil || !Unreadable(err) || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Errorf("%v, want refused as unreadable, too large", err)
	}
}

// An unquoted wildcard route (route: *.dev.example.com=dev) is a YAML
// alias to yaml.v3, whose error ("did not find expected alphabetic or
// numeric character") names neither the cause nor the fix.
func TestApplyFileUnquotedWildcardHint(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"listen: \":8443\"\nroute: *.dev.example.com=dev\n", "line 2: quote a value that starts with '*'"},
		{"route:\n  - a.example.com=a\n  - *.dev.example.com=dev\n", "line 3: quote a value that starts with '*'"},
		{"route: [a.example.com=a, *.dev.example.com=dev]\n", "line 1: quote a value that starts with '*'"},
		{"mirror: [*.mirror.example.com/docker.io=hub]\n", "line 1: quote a value that starts with '*'"},
	} {
		c := Defaults()
		err := c.ApplyFile(writeYAML(t, tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a hint %q", tc.file, err, tc.want)
		}
	}
	// An alias is no wildcard: no hint on another YAML error.
	c := Defaults()
	if err := c.ApplyFile(writeYAML(t, "x: &r a.example.com=a\nroute: *r\nlisten: \":8443\n")); err == nil || strings.Contains(err.Error(), "quote a value") {
		t.Errorf("hint on a file without an unquoted wildcard: %v", err)
	}
	// Quoted, it is read.
	c = Defaults()
	if err := c.ApplyFile(writeYAML(t, "route: [\"*.dev.example.com=dev\"]\n")); err != nil || !slices.Equal(c.Route, []string{"*.dev.example.com=dev"}) {
		t.Errorf("quoted: %v, route %q", err, c.Route)
	}
}

// A list indented with a tab (editors and Makefile habits) is refused by
// yaml.v3 with "found character that cannot start any token", which says
// nothing of tabs.
func TestApplyFileTabIndentHint(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"route:\n\t- a.example.com=a\n", "line 2: indent with spaces"},
		{"listen: \":8443\"\nroute:\n  \t- a.example.com=a\n", "line 3: indent with spaces"},
	} {
		c := Defaults()
		err := c.ApplyFile(writeYAML(t, tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a hint %q", tc.file, err, tc.want)
		}
	}
	// A tab after the key is a blank YAML allows: read, no hint.
	c := Defaults()
	if err := c.ApplyFile(writeYAML(t, "route:\ta.example.com=a\n")); err != nil || !slices.Equal(c.Route, []string{"a.example.com=a"}) {
		t.Errorf("tab after the key: %v, route %q", err, c.Route)
	}
}

// A relative path in the file (cert, key) is read from the working
// directory, as the same path on the command line is, not from the file's
// own directory: one value means one file whichever form gave it.
func TestApplyFileRelativePathsFromWorkingDir(t *testing.T) {
	file := writeYAML(t, "cert: [r.crt]\nkey: [r.key]\nroute: [r.example.com=team-a]\n")
	writeCert(t, filepath.Dir(file), "r", "r.example.com") // beside the file: not read
	build := func() error {
		c := Defaults()
		if err := c.ApplyFile(file); err != nil {
			t.Fatal(err)
		}
		_, err := c.Build()
		return err
	}
	t.Chdir(t.TempDir())
	if err := build(); err == nil || !strings.Contains(err.Error(), "r.crt") {
		t.Errorf("pair only beside the file: Build error %v, want r.crt not found from the working directory", err)
	}
	wd := t.TempDir()
	writeCert(t, wd, "r", "r.example.com")
	t.Chdir(wd)
	if err := build(); err != nil {
		t.Errorf("pair in the working directory: %v", err)
	}
}

// Aliases are read as the value written out, so a few bytes of aliases
// can stand for gigabytes of values (billion laughs: one long anchored
// value and thousands of aliases of it, which check then parsed and
// echoed in its errors). A file whose values written out exceed what
// nexmux reads in a file is refused whole, saying so.
func TestApplyFileAliasesBounded(t *testing.T) {
	big := strings.Repeat("a", 60000) + ".example.com=r"
	laughs := "default-route: &x " + big + "\nroute: [" + strings.Repeat("*x, ", 15000) + "*x]\n"
	c := Defaults()
	err := c.ApplyFile(writeYAML(t, laughs))
	if err == nil || !Unreadable(err) || !strings.Contains(err.Error(), "aliases") || !strings.Contains(err.Error(), "16 MiB") {
		t.Errorf("%d bytes whose aliases write out %d MB: %.300v; want refused whole, naming the aliases and the 16 MiB bound", len(laughs), 15001*len(big)>>20, err)
	}
	if len(c.Route) > 0 || c.DefaultRoute != "" {
		t.Errorf("refused file applied %d routes, default route of %d bytes", len(c.Route), len(c.DefaultRoute))
	}
}

// Every item of a list that is no string is named, not only the first:
// every problem at once.
func TestApplyFileListNamesEveryBadItem(t *testing.T) {
	err := Defaults().ApplyFile(writeYAML(t, "route:\n  - {a: b}\n  - a.example.com=r\n  - [x]\n  - ~\n"))
	for _, want := range []string{"route: line 2: want a string", "route: line 4: want a string", "route: line 5: an empty item"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: lacks %q", err, want)
		}
	}
}

// A YAML error that is no unquoted IPv6 address gets no hint saying to
// quote one: a list nested past yaml.v3's depth, or a list left open
// before a nested one, drew it for their '['.
func TestApplyFileNoIPv6HintForNestedLists(t *testing.T) {
	for _, file := range []string{
		"route: " + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "\n",
		"route: [[a.example.com=r], [b.example.com=r\nlisten: \":1\"\n",
	} {
		err := Defaults().ApplyFile(writeYAML(t, file))
		if err == nil || strings.Contains(err.Error(), "an IPv6 address") { // the test's name, in the path, holds IPv6
			t.Errorf("%.40q: %v, want a YAML error without the IPv6 hint", file, err)
		}
	}
}

// A control character YAML refuses (a NUL from a binary or corrupted
// file) is named with its line: yaml.v3's error names none.
func TestApplyFileControlCharacterLine(t *testing.T) {
	err := Defaults().ApplyFile(writeYAML(t, "listen: \":1\"\nroute: [a.example.com=r]\nport: [8082=r\x00]\n"))
	if err == nil || !strings.Contains(err.Error(), "control characters") || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), `0x00`) {
		t.Errorf("%v, want yaml.v3's error and line 3, byte 0x00", err)
	}
}

// A YAML merge key (<<) is read as yaml.v3's decoder reads one: the
// merged mappings' keys as if written out, a key written out winning over
// a merged one wherever << stands, an earlier map of a list of merges over
// a later one, and a merged key's value taken whole. (The anchored map
// stands in a << itself, or under an extension key:
// TestApplyFileExtensionKeys.)
func TestApplyFileMerges(t *testing.T) {
	def := Defaults()
	checkFileCases(t, []fileCase{
		{"top-level merge", "<<: &base\n  listen: \"127.0.0.1:9443\"\n  max-conns: 7\nroute: [a.example.com=a]\n",
			func(c *Config) bool {
				return c.Listen == "127.0.0.1:9443" && c.MaxConns == 7 && slices.Equal(c.Route, []string{"a.example.com=a"})
			}},
		{"a key written out wins, before or after <<", "log-level: warn\n<<: {log-level: debug, log-format: json, max-conns: 7}\nlog-format: text\n",
			func(c *Config) bool { return c.LogLevel == "warn" && c.LogFormat == "text" && c.MaxConns == 7 }},
		{"an earlier map of a list wins", "<<: [&a {log-level: debug, max-conns: 1}, &b {log-level: warn, max-conns: 2, log-format: json}]\n",
			func(c *Config) bool { return c.LogLevel == "debug" && c.MaxConns == 1 && c.LogFormat == "json" }},
		{"a merged map's own keys win over its merges", "<<: {<<: {log-level: debug, max-conns: 1}, log-level: warn}\n",
			func(c *Config) bool { return c.LogLevel == "warn" && c.MaxConns == 1 }},
		{"an earlier map wins over a later one's merges", "<<: [{max-conns: 1}, {<<: {max-conns: 2, log-level: warn}}]\n",
			func(c *Config) bool { return c.MaxConns == 1 && c.LogLevel == "warn" }},
		{"an alias of a map merged already", "<<: [&a {log-level: debug}, {<<: *a, max-conns: 3}]\n",
			func(c *Config) bool { return c.LogLevel == "debug" && c.MaxConns == 3 }},
		{"a repeatable flag merged in is its list", "<<: {route: [a.example.com=a, b.example.com=b]}\n",
			func(c *Config) bool { return slices.Equal(c.Route, []string{"a.example.com=a", "b.example.com=b"}) }},
		{"a repeatable flag written out replaces the merged list", "route: [c.example.com=c]\n<<: {route: [a.example.com=a, b.example.com=b], port: [8082=p]}\n",
			func(c *Config) bool {
				return slices.Equal(c.Route, []string{"c.example.com=c"}) && slices.Equal(c.Port, []string{"8082=p"})
			}},
		{"a repeatable flag of an earlier map replaces a later one's", "<<: [{route: [a.example.com=a]}, {route: [b.example.com=b, c.example.com=c]}]\n",
			func(c *Config) bool { return slices.Equal(c.Route, []string{"a.example.com=a"}) }},
		// yaml.v3 skips a merged key written out, its value unread.
		{"a merged value written over is not read", "max-conns: 5\n<<: {max-conns: many}\n",
			func(c *Config) bool { return c.MaxConns == 5 }},
		{"an empty key written out keeps the default over a merged value", "idle-timeout:\n<<: {idle-timeout: 5s}\n",
			func(c *Config) bool { return c.IdleTimeout == def.IdleTimeout }},
		{"an empty merged key keeps the default", "<<: {idle-timeout: ~, max-conns: 7}\n",
			func(c *Config) bool { return c.IdleTimeout == def.IdleTimeout && c.MaxConns == 7 }},
		{"a !!merge tag", "!!merge <<: {max-conns: 7}\n",
			func(c *Config) bool { return c.MaxConns == 7 }},
		{"an alias key in a merged map", "default-route: &k route\n<<: {*k : [a.example.com=a]}\n",
			func(c *Config) bool { return slices.Equal(c.Route, []string{"a.example.com=a"}) }},
	}, nil)
}

// A merge that is no mapping is refused naming its line, as yaml.v3
// refuses it ("map merge requires map or sequence of maps"); a merged key
// is checked as one written out, its problems naming its line in the
// merged map, where its text is (as yaml.v3's KnownFields does).
func TestApplyFileMergeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"a single value", "listen: \":1\"\n<<: x\n", []string{"line 2: a merge (<<) takes a mapping or a list of mappings", "not a single value"}},
		{"an empty merge", "<<:\nlisten: \":1\"\n", []string{"line 1: a merge", "not an empty value (YAML null)"}},
		{"an alias of a single value", "listen: &l \":1\"\n<<: *l\n", []string{"line 2: a merge", "not *l, a single value"}},
		{"an alias of a list", "route: &r [a.example.com=a]\n<<: *r\n", []string{"line 2: a merge", "not *r, a list"}},
		{"a single value in a list", "<<:\n  - {max-conns: 1}\n  - x\n", []string{"line 3: a merge (<<) list takes mappings only", "its item 2 is a single value"}},
		{"a list in a list", "<<: [[{max-conns: 1}]]\n", []string{"line 1: a merge (<<) list", "its item 1 is a list"}},
		{"a second merge key", "<<: {max-conns: 1}\nlisten: \":1\"\n<<: {log-level: warn}\n", []string{"line 3: a second merge key (<<)", "at line 1"}},
		{"a mapping merged into itself", "<<: &r\n  max-conns: 1\n  <<: *r\n", []string{"line 3: *r merges a mapping into itself"}},
		{"unknown key", "<<: &base\n  listen: \":1\"\n  routes: [a.example.com=a]\n", []string{"line 3: field routes not found: keys are the long flag names"}},
		{"config key", "<<:\n  config: other.yaml\n", []string{"line 2: a config file cannot name another one"}},
		{"bad value", "<<:\n  listen: \":1\"\n  max-conns: many\n", []string{"max-conns: line 3", `"many"`, "whole number"}},
		{"bad list item", "<<:\n  route:\n    - a.example.com=a\n    - [x]\n", []string{"route: line 4: want a string"}},
		{"a key given twice in a merged map", "<<:\n  listen: \":1\"\n  listen: \":2\"\n", []string{`line 3: key "listen" already defined at line 2`}},
		// As yaml.v3 says "already defined" of any mapping it reads.
		{"a key given twice in a merged map, written out too", "listen: \":0\"\n<<: {listen: \":1\", listen: \":2\"}\n", []string{`key "listen" already defined`}},
		{"a quoted << is a key", "\"<<\": {max-conns: 1}\n", []string{"line 1: field << not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeYAML(t, tc.yaml)
			c := Defaults()
			err := c.ApplyFile(p)
			if err == nil {
				t.Fatalf("ApplyFile accepted %q: %+v", tc.yaml, c)
			}
			for _, w := range append(tc.want, "config "+p+": ") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if Unreadable(err) {
				t.Error("a mapping with a bad merge counted as an unreadable file")
			}
		})
	}
}

// Merges keep every problem listed at once, each as the kind of problem
// it is: a merged key's as a key written out's, and a merge that is no
// mapping as no setting's (it may have held any, the iptables chain that
// `iptables --delete` needs included, so nothing lets it pass); the valid
// keys, merged ones too, are applied.
func TestApplyFileMergeListsEveryProblem(t *testing.T) {
	p := writeYAML(t, `listen: [":1"]
<<:
  - &a
    routes: x
    max-conns: many
    log-level: debug
  - 7
`)
	c := Defaults()
	err := c.ApplyFile(p)
	var me *multierror.Error
	if !errors.As(err, &me) {
		t.Fatalf("%v, want four problems", err)
	}
	type kind int
	const (
		setting kind = iota
		unknown
		other
	)
	want := []struct {
		text string
		kind kind
	}{
		{"listen: line 1", setting},
		{"line 4: field routes not found", unknown},
		{"max-conns: line 5", setting},
		{"line 7: a merge (<<) list takes mappings only", other},
	}
	if len(me.Errors) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(me.Errors), len(want), err)
	}
	for i, w := range want {
		e := me.Errors[i]
		var se *SettingError
		var uk *UnknownKeyError
		got := other
		if errors.As(e, &se) {
			got = setting
		} else if errors.As(e, &uk) {
			got = unknown
		}
		if !strings.HasPrefix(e.Error(), "config "+p+": ") || !strings.Contains(e.Error(), w.text) || got != w.kind {
			t.Errorf("problem %d %q (kind %d): want the file, %q, kind %d", i, e, got, w.text, w.kind)
		}
	}
	want2 := Defaults()
	want2.LogLevel, want2.FileKeys, want2.FileLines = "debug", []string{"log-level"}, map[string][]int{"log-level": {6, 6}}
	want2.FileValues = map[string]any{"log-level": "debug"}
	if !reflect.DeepEqual(c, want2) {
		t.Errorf("the valid merged key was not applied, or an invalid one was: %+v", c)
	}
}

// A file with merges is the file with them written out in place of each
// <<: the same config, the same keys in the same order (what check and a
// reload report), each merged value's line that of its text in the merged
// map.
func TestApplyFileMergesWrittenOut(t *testing.T) {
	merged := writeYAML(t, `max-conns: 9
<<:
  - &common
    listen: "127.0.0.1:9443"
    upstream:
      - http://nexus-1:8081
      - http://nexus-2:8081
    max-conns: 100
    <<: {log-level: debug, log-format: json}
  - &team
    route: [a.example.com=team-a, b.example.com=team-b]
    listen: ":1"
    port: [8082=team-a]
route: [c.example.com=team-c]
idle-timeout: 2m
`)
	plain := writeYAML(t, `max-conns: 9
listen: "127.0.0.1:9443"
upstream:
  - http://nexus-1:8081
  - http://nexus-2:8081
log-level: debug
log-format: json
port: [8082=team-a]
route: [c.example.com=team-c]
idle-timeout: 2m
`)
	got, want := Defaults(), Defaults()
	if err := got.ApplyFile(merged); err != nil {
		t.Fatalf("merges refused: %v", err)
	}
	if err := want.ApplyFile(plain); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct {
		name, value string
		line        int
	}{{"listen", "", 4}, {"upstream", "http://nexus-2:8081", 7}, {"log-level", "", 9}, {"port", "8082=team-a", 13}, {"route", "c.example.com=team-c", 14}} {
		if n := got.FileLine(l.name, l.value); n != l.line {
			t.Errorf("FileLine(%s, %q) = %d, want %d", l.name, l.value, n, l.line)
		}
	}
	got.FileLines, want.FileLines = nil, nil // the files' lines differ
	if !reflect.DeepEqual(got, want) {
		t.Errorf("with merges\n%+v\nwritten out\n%+v", got, want)
	}
}

// A merged value's aliases count in the bound on values written out, as
// a key's own do (billion laughs through a <<).
func TestApplyFileMergedAliasesBounded(t *testing.T) {
	big := strings.Repeat("a", 60000) + ".example.com=r"
	laughs := "default-route: &x " + big + "\n<<: {route: [" + strings.Repeat("*x, ", 15000) + "*x]}\n"
	c := Defaults()
	err := c.ApplyFile(writeYAML(t, laughs))
	if err == nil || !Unreadable(err) || !strings.Contains(err.Error(), "aliases") {
		t.Errorf("%.300v; want refused whole, naming the aliases", err)
	}
	if len(c.Route) > 0 {
		t.Errorf("refused file applied %d routes", len(c.Route))
	}
}

// A mapping merged twice is read once: merges of merges of one map, a
// few hundred bytes, would otherwise be read 2^40 times.
func TestApplyFileMergesReadOnce(t *testing.T) {
	var b strings.Builder
	b.WriteString("<<:\n  - &m0 {log-level: debug}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
	}
	p := writeYAML(t, b.String())
	c := Defaults()
	done := make(chan error, 1)
	go func() { done <- c.ApplyFile(p) }()
	select {
	case err := <-done:
		if err != nil || c.LogLevel != "debug" {
			t.Errorf("%v, log-level %q; want debug", err, c.LogLevel)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("merges of merges still being read after 10s")
	}
}

// An extension key (x-common: &common {...}), as docker compose has them,
// parks an anchored block for merges and aliases: read by nothing, its
// value whatever it is, in a merged map too.
func TestApplyFileExtensionKeys(t *testing.T) {
	checkFileCases(t, []fileCase{
		{"a block merged", "x-common: &common\n  listen: \"127.0.0.1:9443\"\n  max-conns: 7\n<<: *common\nroute: [a.example.com=a]\n",
			func(c *Config) bool {
				return c.Listen == "127.0.0.1:9443" && c.MaxConns == 7 && slices.Equal(c.Route, []string{"a.example.com=a"})
			}},
		{"blocks merged in two mappings' order", "x-a: &a {log-level: debug, max-conns: 1}\nx-b: &b {log-level: warn, log-format: json}\n<<: [*a, *b]\n",
			func(c *Config) bool { return c.LogLevel == "debug" && c.MaxConns == 1 && c.LogFormat == "json" }},
		{"a list aliased", "x-routes: &routes [a.example.com=a, b.example.com=b]\nroute: *routes\n",
			func(c *Config) bool { return slices.Equal(c.Route, []string{"a.example.com=a", "b.example.com=b"}) }},
		// Not read as settings: no key of it need name a flag, nor any
		// value be one a flag takes.
		{"its value is not checked", "x-notes:\n  routes: nope\n  max-conns: many\n  nested: [[1, {a: b}], ~]\nx-empty:\nx-: 1\nmax-conns: 3\n",
			func(c *Config) bool { return c.MaxConns == 3 }},
		{"in a merged map", "<<: {x-note: [whatever], max-conns: 7}\n",
			func(c *Config) bool { return c.MaxConns == 7 }},
	}, func(t *testing.T, c *Config) {
		for _, k := range c.FileKeys {
			if IsExtension(k) {
				t.Errorf("FileKeys holds %s", k)
			}
		}
	})
}

// An extension key's value is read by nothing, but the file is still one
// YAML mapping as yaml.v3 decodes it: its key given once, its value within
// the bound on values written out and not inside itself, the file
// parsable. Only x- (lower case, as docker compose has it) is one.
func TestApplyFileExtensionKeyErrors(t *testing.T) {
	big := strings.Repeat("a", 60000)
	for _, tc := range []struct {
		name, yaml string
		unreadable bool
		want       []string
	}{
		{"given twice", "x-a: 1\nmax-conns: 3\nx-a: 2\n", false, []string{`line 3: key "x-a" already defined at line 1`}},
		// yaml.v3 refuses a key twice in any mapping, however deep.
		{"a key twice in its value", "x-common: &c {a: 1, a: 2}\nmax-conns: 3\n", false, []string{`line 1: key "a" already defined at line 1`}},
		{"a key twice deeper in its value", "x-l:\n  - [1, {b: {c: 1,\n      c: 2}}]\n  - k: v\n    k: w\n", false,
			[]string{`line 3: key "c" already defined at line 2`, `line 5: key "k" already defined at line 4`}},
		{"an alias key naming a key given", "x-k: &k a\nx-m: {a: 1, *k : 2}\n", false, []string{`line 2: key "a" already defined at line 2`}},
		{"aliases beyond the bound", "x-big: &x " + big + "\nx-laughs: [" + strings.Repeat("*x, ", 300) + "*x]\n", true, []string{"aliases write out", "16 MiB"}},
		{"nested aliases beyond the bound", "x-big: &x " + big + "\nx-l1: &l1 [" + strings.Repeat("*x, ", 20) + "*x]\nx-l2: &l2 [" + strings.Repeat("*l1, ", 5) + "*l1]\nx-l3: {a: *l2, b: *l2}\n", true, []string{"aliases write out", "16 MiB"}},
		// The setting reads the list's scalar items only; the extension
		// key holds the nested list too.
		{"a setting's list aliased whole", "x-big: &x " + big + "\nroute: &l [a.example.com=a, [" + strings.Repeat("*x, ", 300) + "*x]]\nx-r: *l\n", true, []string{"aliases write out", "16 MiB"}},
		{"a value inside itself", "max-conns: 3\nx-a: &a\n  k: [1, *a]\n", true, []string{"line 3: the alias *a is inside its own anchor &a"}},
		{"broken YAML", "x-a: [1, 2\nmax-conns: 3\n", true, []string{"did not find expected"}},
		{"upper case", "X-common: 1\n", false, []string{"field X-common not found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeYAML(t, tc.yaml)
			err := Defaults().ApplyFile(p)
			if err == nil || Unreadable(err) != tc.unreadable {
				t.Fatalf("%.200v; want an error, unreadable: %v", err, tc.unreadable)
			}
			for _, w := range append(tc.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%.300v: lacks %q", err, w)
				}
			}
		})
	}
}

// A key given twice in a mapping of an extension key's value is named
// once, however often the value is aliased or merged, and with the
// file's other problems: the rest of the file is applied.
func TestApplyFileExtensionKeyDuplicateNamedOnce(t *testing.T) {
	p := writeYAML(t, "x-a: &a\n  listen: \":1\"\n  listen: \":2\"\nx-b: *a\nx-c: [*a, *a]\n<<: *a\nmax-conns: many\nroute: [a.example.com=r]\n")
	c := Defaults()
	err := c.ApplyFile(p)
	if err == nil || Unreadable(err) {
		t.Fatalf("%v; want the keys' problems, the file applied", err)
	}
	msg := err.Error()
	if n := strings.Count(msg, `key "listen" already defined at line 2`); n != 1 || !strings.Contains(msg, `line 3: key "listen"`) {
		t.Errorf("the key given twice named %d times, want once at line 3:\n%s", n, msg)
	}
	if !strings.Contains(msg, `max-conns: line 7: "many"`) || !slices.Equal(c.Route, []string{"a.example.com=r"}) {
		t.Errorf("the file's other keys not read: route %q:\n%s", c.Route, msg)
	}
}

// An extension key's value is sized once however often aliased: merges of
// lists of aliases, doubling 60 times, are read in no time.
func TestApplyFileExtensionKeySizedOnce(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-0: &a0 [x]\n")
	for i := 1; i <= 60; i++ {
		fmt.Fprintf(&b, "x-%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	p := writeYAML(t, b.String())
	done := make(chan error, 1)
	go func() { done <- Defaults().ApplyFile(p) }()
	select {
	case err := <-done:
		if err == nil || !Unreadable(err) || !strings.Contains(err.Error(), "16 MiB") {
			t.Errorf("%v; want refused whole by the bound", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("aliases of aliases still being sized after 10s")
	}
}

// An unknown key a letter or two from a flag's name (a plural, '_' for
// '-', another case, two letters swapped) names the flag meant, as a
// misspelt NEXMUX_ variable does (Misspeller): the key names the setting
// the file meant to give. Refused already, a short key one letter from a
// name (ports:, rout:) names it too (RefusedMisspeller); a key far from
// every name draws no guess, and a key of another command's setting
// (chain:) is no unknown key at all.
func TestApplyFileUnknownKeyHint(t *testing.T) {
	for key, want := range map[string]string{
		"routes": "route", "upstreams": "upstream", "default_route": "default-route", "max_conns": "max-conns",
		"defaultRoute": "default-route", "MaxConns": "max-conns", "ROUTE": "route", "chian": "chain",
		"upstream-max-con": "upstream-max-conns", "metrics_listen": "metrics-listen", "per_client_ipv6_prefix": "per-client-ipv6-prefix",
		"ports": "port", "certs": "cert", "rout": "route", "kye": "key",
		"domain": "", "log": "", "nexus": "", "NEXMUX_ROUTE": "", "xyzzy": "",
	} {
		p := writeYAML(t, "listen: \":1\"\n"+key+": x\n")
		err := Defaults().ApplyFile(p)
		line := fmt.Sprintf("config %s: line 2: field %s not found: keys are the long flag names", p, key)
		if want != "" {
			line += " (did you mean " + want + "?)"
		}
		var uk *UnknownKeyError
		if err == nil || err.Error() != line || !errors.As(err, &uk) || uk.Key != key {
			t.Errorf("%s: %v; want %q", key, err, line)
		}
	}
	if err := Defaults().ApplyFile(writeYAML(t, "chain: X\nfamilies: [iptables]\njumps: false\n")); err != nil {
		t.Errorf("another command's keys: %v", err)
	}
}

func TestMisspeller(t *testing.T) {
	names := []string{"route", "routes-file", "port", "chain", "max-conns", "max-conn-age"}
	for name, want := range map[string]string{
		"routes": "route", "ROUTE": "route", "max_conns": "max-conns", "maxconn": "max-conns", "CHIAN": "chain",
		"prot": "port", "ports": "", "rout": "", "chains": "chain", "max-conn-ages": "max-conn-age", "": "",
	} {
		if got := Misspeller(names)(name); got != want {
			t.Errorf("Misspeller(names)(%q) = %q, want %q", name, got, want)
		}
	}
	// A name refused already (an unknown flag or key) can only mean one
	// of names: a short one within one edit is named too, not within two.
	for name, want := range map[string]string{
		"routes": "route", "CHIAN": "chain", "prot": "port", "ports": "port", "rout": "route", "por": "port",
		"ro": "", "chn": "", "maxconn": "max-conns", "": "",
	} {
		if got := RefusedMisspeller(names)(name); got != want {
			t.Errorf("RefusedMisspeller(names)(%q) = %q, want %q", name, got, want)
		}
	}
}

// A large anchored value aliased by many keys is sized once, not once per
// alias: its items may be empty (nothing towards the bound), so only the
// work, keys times items, would grow, in a file well under the bound.
func TestApplyFileAliasedValueSizedOnceAcrossKeys(t *testing.T) {
	for _, tc := range []struct {
		name, key   string
		items, keys int
	}{
		{"extension keys", "x-k%d", 200000, 30000},
		// Fewer keys: each draws a hint (Misspeller), which costs more
		// than reading its list once.
		{"keys of no setting", "k%d", 400000, 15000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("x-many: &many\n" + strings.Repeat("  -\n", tc.items))
			for i := range tc.keys {
				fmt.Fprintf(&b, tc.key+": *many\n", i)
			}
			p := writeYAML(t, b.String())
			done := make(chan struct{})
			go func() { Defaults().ApplyFile(p); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("a value aliased by many keys still being sized after 10s")
			}
		})
	}
}

// Merges of merges are read to maxMergeDepth and no deeper: a file of a
// long chain of them (x-N: &N {<<: *N-1}) is refused naming the line,
// not read until the stack overflows, which kills the process.
func TestApplyFileMergeDepthBounded(t *testing.T) {
	chain := func(merges int) string {
		var b strings.Builder
		b.WriteString("x-0: &m0 {log-level: debug}\n")
		for i := 1; i < merges; i++ {
			fmt.Fprintf(&b, "x-%d: &m%d {<<: *m%d}\n", i, i, i-1)
		}
		fmt.Fprintf(&b, "<<: *m%d\n", merges-1)
		return b.String()
	}
	c := Defaults()
	if err := c.ApplyFile(writeYAML(t, chain(maxMergeDepth))); err != nil || c.LogLevel != "debug" {
		t.Errorf("%d merges deep: %.300v, log-level %q; want read", maxMergeDepth, err, c.LogLevel)
	}
	c = Defaults()
	err := c.ApplyFile(writeYAML(t, chain(maxMergeDepth+1)))
	want := fmt.Sprintf("line 2: *m0 is merged %d merges deep, more than the %d nexmux reads", maxMergeDepth+1, maxMergeDepth)
	if err == nil || !strings.Contains(err.Error(), want) || c.LogLevel == "debug" {
		t.Errorf("%d merges deep: %.300v, log-level %q; want refused: %s", maxMergeDepth+1, err, c.LogLevel, want)
	}
}

// editDistanceMatrix is EditDistance as the whole matrix: the reference
// the three-row EditDistance is checked against.
func editDistanceMatrix(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"chain", "chian", 1}, {"route", "routes", 1},
		{"maxconns", "maxconn", 1}, {"ca", "abc", 3}, {"kitten", "sitting", 3},
		{strings.Repeat("a", 40), strings.Repeat("a", 38) + "ba", 1}, {strings.Repeat("ab", 20), strings.Repeat("ba", 20), 2},
	} {
		if got := EditDistance(c.a, c.b); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = "abc-"[rng.IntN(4)]
		}
		return string(b)
	}
	for range 20000 {
		a, b := word(), word()
		if got, want := EditDistance(a, b), editDistanceMatrix(a, b); got != want {
			t.Fatalf("EditDistance(%q, %q) = %d, the whole matrix says %d", a, b, got, want)
		}
	}
}
