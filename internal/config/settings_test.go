package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/route"
)

// Every field of Config but File is exactly one setting, and the setting's
// default has the field's type.
func TestSettingsCoverConfig(t *testing.T) {
	fields := map[string]reflect.Type{}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		if f := ct.Field(i); f.Name != "File" && f.Name != "FileKeys" && f.Name != "FileLines" && f.Name != "FileValues" && f.Name != "EnvWarnings" { // not settings
			fields[f.Name] = f.Type
		}
	}
	var c Config
	cv := reflect.ValueOf(&c).Elem()
	names := map[string]bool{}
	for _, s := range Settings() {
		if names[s.Name] {
			t.Errorf("setting %s listed twice", s.Name)
		}
		names[s.Name] = true
		p := reflect.ValueOf(s.ptr(&c))
		var field string
		for i := range cv.NumField() {
			if cv.Field(i).Addr().Pointer() == p.Pointer() && cv.Field(i).Type() == p.Elem().Type() {
				field = ct.Field(i).Name
			}
		}
		if field == "" {
			t.Errorf("setting %s points at no field of Config", s.Name)
			continue
		}
		if _, ok := fields[field]; !ok {
			t.Errorf("field %s has two settings (second: %s)", field, s.Name)
		}
		if reflect.TypeOf(s.Default()) != p.Elem().Type() {
			t.Errorf("setting %s: default %T for a field of type %s", s.Name, s.Default(), p.Elem().Type())
		}
		delete(fields, field)
	}
	for f := range fields {
		t.Errorf("Config.%s has no setting", f)
	}
}

// The config file ignores keys starting with x- (IsExtension): a setting
// so named would be ignored there too.
func TestNoSettingIsAnExtensionKey(t *testing.T) {
	for _, s := range Settings() {
		if IsExtension(s.Name) || strings.HasPrefix(strings.ToLower(s.Name), "x-") {
			t.Errorf("setting %s starts with x-: the config file would ignore its key", s.Name)
		}
	}
	if IsExtension("config") {
		t.Error("--config is an extension key")
	}
}

func TestEnvVar(t *testing.T) {
	for flag, want := range map[string]string{"listen": "NEXMUX_LISTEN", "proxy-protocol-from": "NEXMUX_PROXY_PROTOCOL_FROM", "socks5-auth-file": "NEXMUX_SOCKS5_AUTH_FILE"} {
		if got := EnvVar(flag); got != want {
			t.Errorf("EnvVar(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	want := &Config{Listen: ":8443", Upstream: []string{"http://127.0.0.1:8081"}, LogFormat: "text", LogLevel: "info",
		MaxConns: DefaultMaxConns, MaxConnsPerClient: DefaultMaxConnsPerClient, PerClientIPv6Prefix: 128, MaxConnAge: 10 * time.Minute, IdleRelease: time.Second,
		BodyTimeout: time.Minute, SendTimeout: time.Minute,
		MaxRequestsPerClient: DefaultMaxRequestsPerClient,
		IptablesChain:        "NEXMUX", IptablesJumps: true, IptablesFamilies: []string{"iptables", "ip6tables"}}
	if got := Defaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("Defaults() = %+v, want %+v", got, want)
	}
	// Defaults hands out copies: changing one leaves the next alone.
	Defaults().Upstream[0] = "changed"
	if got := Defaults().Upstream[0]; got != "http://127.0.0.1:8081" {
		t.Errorf("Defaults share a slice: upstream %q", got)
	}
}

func TestRestartNeeded(t *testing.T) {
	base := func() *Config {
		c := Defaults()
		c.Route = []string{"a.example.com=a"}
		c.Port = []string{"8082=a"}
		return c
	}
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"nothing", func(c *Config) {}, nil},
		{"routes reload", func(c *Config) { c.Route = []string{"b.example.com=b"}; c.Cert = []string{"x"} }, nil},
		{"drain, memory trim, PROXY settings reload", func(c *Config) {
			c.DrainTimeout, c.NoMemoryTrim, c.ProxyProtocolFrom, c.PassthroughProxyProtocol = time.Second, true, []string{"10.0.0.0/8"}, "v2"
		}, nil},
		{"listener", func(c *Config) { c.Listen = ":9443" }, []string{"listen"}},
		{"upstream nodes and drains reload", func(c *Config) {
			c.Upstream, c.DrainUpstream = []string{"http://nexus-0:8081", "http://nexus-1:8081"}, []string{"http://nexus-1:8081"}
		}, nil},
		{"upstream node set shape", func(c *Config) {
			c.HealthInterval, c.AffinitySecretFile, c.UpstreamMaxConns = time.Second, "/secret", 50
		}, []string{"health-interval", "affinity-secret-file", "upstream-max-conns"}},
		{"ports without bind-ports", func(c *Config) { c.Port = []string{"8083=a"} }, nil},
		{"bind-ports turned on", func(c *Config) { c.BindPorts = true }, []string{"bind-ports"}},
		{"log and limits", func(c *Config) { c.LogLevel, c.MaxConns, c.IdleTimeout = "debug", 5, time.Minute },
			[]string{"idle-timeout", "max-conns", "log-level"}},
		{"socks5 password file set", func(c *Config) { c.Socks5AuthFile = "/users" }, []string{"socks5-auth-file (on/off)"}},
		{"defaults written out", func(c *Config) {
			c.HandshakeTimeout, c.HeaderTimeout, c.IdleTimeout, c.PassthroughIdleTimeout = 10*time.Second, 30*time.Second, 2*time.Minute, 5*time.Minute
			c.HealthInterval, c.UpstreamMaxConns, c.PlainHTTPScheme = 2*time.Second, 200, "http"
		}, nil},
		{"other spellings", func(c *Config) { c.LogLevel, c.LogFormat = "INFO", "text" }, nil},
		// 0 is per-client-ipv6-prefix's other spelling of 128: each address.
		{"per-client-ipv6-prefix 0 for 128", func(c *Config) { c.PerClientIPv6Prefix = 0 }, nil},
		{"per-client-ipv6-prefix changed", func(c *Config) { c.PerClientIPv6Prefix = 64 }, []string{"per-client-ipv6-prefix"}},
		{"log level and format left empty", func(c *Config) { c.LogLevel, c.LogFormat = "", "" }, nil},
		{"default changed", func(c *Config) { c.IdleTimeout, c.PlainHTTPScheme, c.LogLevel = time.Minute, "https", "Debug" },
			[]string{"plain-http-scheme", "idle-timeout", "log-level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := base()
			tc.change(n)
			if got := RestartNeeded(base(), n); !slices.Equal(got, tc.want) {
				t.Errorf("RestartNeeded = %q, want %q", got, tc.want)
			}
		})
	}
	old, n := base(), base()
	old.BindPorts, n.BindPorts, n.Port = true, true, []string{"8083=a"}
	if got := RestartNeeded(old, n); !slices.Equal(got, []string{"port (with --bind-ports)"}) {
		t.Errorf("port change with --bind-ports: RestartNeeded = %q", got)
	}
	old.StripHeader, n.StripHeader = []string{"X-Remote-User", "X-Other"}, []string{"x-other", "x-remote-user", "X-Other"}
	if got := RestartNeeded(old, n); !slices.Equal(got, []string{"port (with --bind-ports)"}) {
		t.Errorf("strip-header respelt: RestartNeeded = %q", got)
	}
	old.StripHeader, n.StripHeader = nil, nil
	old.Socks5AuthFile, n.Socks5AuthFile, n.Port = "/a", "/b", old.Port
	if got := RestartNeeded(old, n); len(got) != 0 {
		t.Errorf("socks5 password file renamed: RestartNeeded = %q, want none", got)
	}
}

func TestJoinContinuations(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"empty", []string{}, []string{}},
		{"plain", []string{"a=r", "b=s"}, []string{"a=r", "b=s"}},
		{"split target re-joined", strings.Split("a=pull:g,push:h,b=r", ","), []string{"a=pull:g,push:h", "b=r"}},
		{"two split targets", strings.Split("a=pull:g,push:h,b=push:i,pull:j", ","), []string{"a=pull:g,push:h", "b=push:i,pull:j"}},
		{"ports", strings.Split("5000=pull:g,push:h,5001=r", ","), []string{"5000=pull:g,push:h", "5001=r"}},
		{"blanks dropped and trimmed", []string{" a=r ", "", "  ", " push:h"}, []string{"a=r,push:h"}},
		{"leading continuation kept for the parser to refuse", []string{"push:h", "a=r"}, []string{"push:h", "a=r"}},
		{"already joined", []string{"a=pull:g,push:h"}, []string{"a=pull:g,push:h"}},
	} {
		got := joinContinuations(tc.in)
		if got == nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: joinContinuations(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
	if got := joinContinuations(nil); got != nil {
		t.Errorf("joinContinuations(nil) = %q, want nil", got)
	}
}

// A list from the file or the command line is taken item by item: an item
// without "=" is not glued onto the one before (that is only for an
// environment variable's pieces), so the route parser names it.
func TestListItemsAreNotGlued(t *testing.T) {
	c := Defaults()
	setting(t, "route").Set(c, []string{"a.example.com=team-a", "b.example.com"})
	lines := problems(t, mustFail(c.Build()))
	if !strings.Contains(strings.Join(lines, "\n"), `"b.example.com"`) {
		t.Errorf("problems %q do not name the item as written", lines)
	}
	if u := setting(t, "upstream").SplitEnv(" http://a:8081 ,, http://b:8081,"); !slices.Equal(u, []string{"http://a:8081", "http://b:8081"}) {
		t.Errorf("SplitEnv = %q", u)
	}
}

func mustFail(_ *Runtime, err error) error { return err }

func setting(t *testing.T, name string) *Setting {
	t.Helper()
	for _, s := range Settings() {
		if s.Name == name {
			return &s
		}
	}
	t.Fatalf("no setting %s", name)
	return nil
}

// TestBuildFromSplitEnv: NEXMUX_ROUTE and NEXMUX_PORT are split at commas
// and the pieces become one route per HOST=.
func TestBuildFromSplitEnv(t *testing.T) {
	c := Defaults()
	r, p := setting(t, "route"), setting(t, "port")
	r.Set(c, r.SplitEnv("a.example.com=pull:team-a,push:team-a-hosted,b.example.com=team-b"))
	p.Set(c, p.SplitEnv("8082=pull:team-a,push:team-a-hosted,8083=team-b"))
	tab, err := route.Build(route.Spec{Routes: c.Route, Ports: c.Port})
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 4 {
		t.Fatalf("Len = %d, want 4: %v", tab.Len(), tab.Routes())
	}
	split := route.Target{Pull: "team-a", Push: "team-a-hosted"}
	if r := tab.LookupHost("a.example.com"); r == nil || r.Target != split {
		t.Errorf("a.example.com => %v, want %v", r, split)
	}
	if r := tab.LookupPort(8082); r == nil || r.Target != split {
		t.Errorf(":8082 => %v, want %v", r, split)
	}
	want := []string{"a.example.com=pull:team-a,push:team-a-hosted", "b.example.com=team-b"}
	if !slices.Equal(c.Route, want) {
		t.Errorf("route = %q, want %q", c.Route, want)
	}
	want = []string{"8082=pull:team-a,push:team-a-hosted", "8083=team-b"}
	if !slices.Equal(c.Port, want) {
		t.Errorf("port = %q, want %q", c.Port, want)
	}
}

// Split env pieces are glued before the route parser sees them, so its
// errors quote what the user typed.
func TestSplitPiecesReportedWhole(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		want []string
	}{
		{"missing = glued onto the previous route", "a.example.com=x,b.example.com", []string{`"a.example.com=x,b.example.com"`, `','`}},
		{"pull twice", "a.example.com=pull:g,pull:h", []string{"pull repository given twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			r := setting(t, "route")
			r.Set(c, r.SplitEnv(tc.env))
			_, err := c.Build()
			lines := problems(t, err)
			for _, w := range tc.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("first problem %q does not mention %q", lines[0], w)
				}
			}
		})
	}
}

func TestConnLimitDefaultsFromFDLimit(t *testing.T) {
	for _, c := range []struct {
		fds           uint64
		conns, client int
	}{{256, 64, 16}, {1024, 448, 56}, {20000, 9936, 256}, {1 << 20, 16384, 256}} {
		if got := maxConnsFor(c.fds); got != c.conns {
			t.Errorf("maxConnsFor(%d) = %d, want %d", c.fds, got, c.conns)
		}
		if got := perClientFor(c.conns); got != c.client {
			t.Errorf("perClientFor(%d) = %d, want %d", c.conns, got, c.client)
		}
	}
	if DefaultMaxConns <= 0 || DefaultMaxConnsPerClient <= 0 {
		t.Errorf("defaults %d/%d: want non-zero", DefaultMaxConns, DefaultMaxConnsPerClient)
	}
}

// DurationText drops time.Duration's trailing zero units, and what it
// writes reads back as the same duration.
func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 500 * time.Millisecond: "500ms", 2 * time.Second: "2s", 2 * time.Minute: "2m",
		90 * time.Second: "1m30s", time.Hour: "1h", 90 * time.Minute: "1h30m", time.Hour + time.Second: "1h0m1s",
	} {
		got := DurationText(d)
		if got != want {
			t.Errorf("DurationText(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != d {
			t.Errorf("DurationText(%v) = %q reads back as %v (%v)", d, got, back, err)
		}
	}
}
