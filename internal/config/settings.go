package config

import (
	"cmp"
	"fmt"
	"net/http"

	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nexmux/nexmux/internal/iptables"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/upstream"
)

// Reload says what a reload does with a changed setting.
type Reload int

const (
	// Reloads: the new value applies to new connections.
	Reloads Reload = iota
	// Restart: the value is baked into a listener or a running server.
	Restart
	// RestartWithBindPorts: with --bind-ports every port route is a
	// listener of its own, so routes change only by restart.
	RestartWithBindPorts
	// RestartOnOff: the value may change, but not between set and unset
	// (the SOCKS5 listener asks for a password or does not).
	RestartOnOff
)

// Setting is one user setting. Its long flag name is also its YAML key and,
// as NEXMUX_<NAME>, its environment variable.
type Setting struct {
	Name  string
	Usage string
	// Reload says whether a reload may change the setting.
	Reload Reload
	// CommaInValue marks repeatable settings whose values hold commas
	// ("HOST=pull:G,push:H"): an environment variable is split at every
	// comma (SplitEnv), so pieces without "=" belong to the piece before
	// them.
	CommaInValue bool
	// DefaultText is the default help shows where the zero value stands
	// for a built-in default ("2s" rather than "0s").
	DefaultText string
	// Command names the one command that has the setting as a flag
	// ("iptables"; check, which validates it, has it hidden); empty: every
	// command that reads a configuration. The key is valid in the config
	// file of every such command, since one file serves them all: the
	// others ignore it.
	Command string
	// choices are the words of a setting that takes one of a few: a value
	// is read whatever its case and stored spelt as here, which is what
	// the code that uses it compares.
	choices []string

	def any               // string, []string, bool, time.Duration or int
	ptr func(*Config) any // the Config field: a pointer of def's type
	// effective, when set, maps a value to the one the running server
	// uses in its place (a built-in default for the zero value, a
	// normalised spelling), so that RestartNeeded compares what runs.
	effective func(any) any
}

// Env is the setting's environment variable.
func (s *Setting) Env() string { return EnvVar(s.Name) }

// EnvVar is the environment variable of a flag: NEXMUX_<FLAG>.
func EnvVar(flag string) string {
	return "NEXMUX_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Default is the value of the setting when nobody gives it, of the type
// the setting holds: string, []string, bool, time.Duration or int.
func (s *Setting) Default() any {
	if l, ok := s.def.([]string); ok {
		return slices.Clone(l)
	}
	return s.def
}

// Set stores v, of the type Default returns, in c.
func (s *Setting) Set(c *Config, v any) {
	switch p := s.ptr(c).(type) {
	case *string:
		*p = s.canonical(v.(string))
	case *[]string:
		*p = TrimItems(v.([]string))
	case *bool:
		*p = v.(bool)
	case *time.Duration:
		*p = v.(time.Duration)
	case *int:
		*p = v.(int)
	default:
		panic(fmt.Sprintf("config: setting %s has a field of type %T", s.Name, p))
	}
}

// TrimItems is items with the blanks around each trimmed, in a new slice
// (items may be a flag's own): a repeatable setting's values read the same
// from a flag, the config file and the environment (SplitEnv), as a
// comma list pasted from one into another expects. An item of blanks only
// is kept, empty, for its setting to refuse: from a flag or the file it
// is a value that went missing (--cert "$CERT" with CERT unset).
func TrimItems(items []string) []string {
	if items == nil {
		return nil
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = strings.TrimSpace(it)
	}
	return out
}

// canonical is text spelt as the choice it names whatever its case; text
// as written when it names none, for Build to refuse quoting it.
func (s *Setting) canonical(text string) string {
	for _, c := range s.choices {
		if strings.EqualFold(text, c) {
			return c
		}
	}
	return text
}

// value returns the setting's current value in c.
func (s *Setting) value(c *Config) any {
	switch p := s.ptr(c).(type) {
	case *string:
		return *p
	case *[]string:
		return *p
	case *bool:
		return *p
	case *time.Duration:
		return *p
	case *int:
		return *p
	}
	panic(fmt.Sprintf("config: setting %s has a field of type %T", s.Name, s.ptr(c)))
}

// SplitEnv reads a repeatable setting's environment variable: values
// separated by commas, blanks around them trimmed, empty ones dropped. The
// command line and the config file give one value per flag or list item,
// commas included, blanks around it trimmed too (Set).
func (s *Setting) SplitEnv(text string) []string {
	var out []string
	for _, it := range strings.Split(text, ",") {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	if s.CommaInValue {
		out = joinContinuations(out)
	}
	return out
}

// DurationText is d as help and README write it: time.Duration's form
// without its trailing zero units (2m, not 2m0s; 1h30m), which the flag
// reads back as d.
func DurationText(d time.Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// effectiveValue returns the value the running server uses for the
// setting's value in c: defaults that stand for the zero value applied,
// spellings that mean the same normalised.
func (s *Setting) effectiveValue(c *Config) any {
	v := s.value(c)
	if s.effective != nil {
		return s.effective(v)
	}
	return v
}

// zeroMeans is an effective function for a setting whose zero value
// stands for def (a timeout of 0: the built-in default).
func zeroMeans[T comparable](def T) func(any) any {
	return func(v any) any {
		if t := v.(T); t != *new(T) {
			return t
		}
		return def
	}
}

// headerSet is the effective value of --strip-header: the names as net/http
// compares them, in order, each once.
func headerSet(v any) any {
	var out []string
	for _, h := range v.([]string) {
		out = append(out, http.CanonicalHeaderKey(strings.TrimSpace(h)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// joinContinuations glues a piece without "=" back onto the piece before it
// ("a.example.com=pull:team-a", "push:team-a-hosted"), trims blanks and
// drops empty pieces. A leading piece without "=" stays for the route
// parser to refuse.
func joinContinuations(items []string) []string {
	if items == nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		if len(out) > 0 && !strings.Contains(it, "=") {
			out[len(out)-1] += "," + it
			continue
		}
		out = append(out, it)
	}
	return out
}

// Settings lists every setting in the order `nexmux --help` shows them.
// It is the only list: flags, environment variables, config file keys,
// defaults and reload rules all come from it.
func Settings() []Setting { return slices.Clone(settings) }

var settings = []Setting{
	{Name: "listen", def: ":8443", Reload: Restart,
		Usage: "fan-in listener `ADDR`",
		ptr:   func(c *Config) any { return &c.Listen }},
	{Name: "upstream", def: []string{"http://127.0.0.1:8081"},
		Usage: "Nexus base `URL`, context path allowed (http://nexus:8081/nexus); repeatable: the nodes of a Nexus HA cluster",
		ptr:   func(c *Config) any { return &c.Upstream }},
	{Name: "drain-upstream", def: []string(nil),
		Usage: "`URL` of an --upstream node to drain: no new reads or uploads, its open uploads finish there; repeatable",
		ptr:   func(c *Config) any { return &c.DrainUpstream }},
	{Name: "health-interval", def: time.Duration(0), Reload: Restart, DefaultText: DurationText(upstream.DefaultHealthInterval), effective: zeroMeans(upstream.DefaultHealthInterval),
		Usage: "probe each Nexus node's status and status/writable every `D`, jittered",
		ptr:   func(c *Config) any { return &c.HealthInterval }},
	{Name: "affinity-secret-file", def: "", Reload: Restart,
		Usage: "`FILE` holding the secret (16+ bytes) every replica signs upload affinity tags with (default: a key derived from the node URLs)",
		ptr:   func(c *Config) any { return &c.AffinitySecretFile }},
	{Name: "upstream-max-conns", def: 0, Reload: Restart, DefaultText: strconv.Itoa(l7.DefaultUpstreamMaxConns), effective: zeroMeans(l7.DefaultUpstreamMaxConns),
		Usage: "`N` requests in flight to each Nexus node; more wait briefly, then get 503",
		ptr:   func(c *Config) any { return &c.UpstreamMaxConns }},
	{Name: "cert", def: []string(nil),
		Usage: "certificate `FILE` (PEM, chain allowed); repeatable, paired with --key by position",
		ptr:   func(c *Config) any { return &c.Cert }},
	{Name: "key", def: []string(nil),
		Usage: "private key `FILE` for the --cert at the same position",
		ptr:   func(c *Config) any { return &c.Key }},
	{Name: "route", def: []string(nil), CommaInValue: true,
		Usage: "`HOST=TARGET`, TARGET REPO or pull:GROUP,push:HOSTED; HOST exact or *.domain; repeatable",
		ptr:   func(c *Config) any { return &c.Route }},
	{Name: "port", def: []string(nil), CommaInValue: true, Reload: RestartWithBindPorts,
		Usage: "`PORT=TARGET`, TARGET REPO or pull:GROUP,push:HOSTED: legacy connector port route (iptables REDIRECT or --bind-ports); repeatable",
		ptr:   func(c *Config) any { return &c.Port }},
	{Name: "default-route", def: "",
		Usage: "`TARGET`, REPO or pull:GROUP,push:HOSTED, for clients that send no server name (IP literals)",
		ptr:   func(c *Config) any { return &c.DefaultRoute }},
	{Name: "passthrough", def: []string(nil),
		Usage: "`HOST=ADDR` copy TLS for HOST raw to ADDR without terminating it; repeatable",
		ptr:   func(c *Config) any { return &c.Passthrough }},
	{Name: "mirror", def: []string(nil),
		Usage: "`HOST/REGISTRY=REPO` serve REGISTRY (docker.io, ghcr.io, host:port) as a pull-through mirror on HOST from Nexus repository REPO; repeatable",
		ptr:   func(c *Config) any { return &c.Mirror }},
	{Name: "mirror-auth-file", def: "",
		Usage: "`FILE` with one user:password line that nexmux sends to Nexus for mirror requests without credentials",
		ptr:   func(c *Config) any { return &c.MirrorAuthFile }},
	{Name: "proxy-protocol-from", def: []string(nil),
		Usage: "`CIDR` of load balancers that MUST send a PROXY v1/v2 header; everyone else must not; repeatable",
		ptr:   func(c *Config) any { return &c.ProxyProtocolFrom }},
	{Name: "passthrough-proxy-protocol", def: "", choices: []string{"v1", "v2", "none"},
		Usage: "send a PROXY header (`v1|v2`; v2 carries the SNI as AUTHORITY TLV) to passthrough backends",
		ptr:   func(c *Config) any { return &c.PassthroughProxyProtocol }},
	{Name: "socks5-listen", def: "", Reload: Restart,
		Usage: "`ADDR` for a SOCKS5 ingress that maps CONNECT host:port onto the routes (and nothing else)",
		ptr:   func(c *Config) any { return &c.Socks5Listen }},
	{Name: "socks5-auth-file", def: "", Reload: RestartOnOff,
		Usage: "`FILE` of user:password lines required by the SOCKS5 ingress",
		ptr:   func(c *Config) any { return &c.Socks5AuthFile }},
	{Name: "plain-http-scheme", def: "", choices: []string{"http", "https"}, Reload: Restart, DefaultText: "http", effective: zeroMeans("http"),
		Usage: "scheme clients use for plain-HTTP port routes, `http|https`: https behind a TLS-ending load balancer",
		ptr:   func(c *Config) any { return &c.PlainHTTPScheme }},
	{Name: "strip-header", def: []string(nil), Reload: Restart, effective: headerSet,
		Usage: "request header `NAME` never passed to Nexus (the one its Remote User Token realm trusts); repeatable",
		ptr:   func(c *Config) any { return &c.StripHeader }},
	{Name: "port-tls-only", def: false, Reload: Restart,
		Usage: "refuse plain HTTP on --port routes (400, then close): TLS only",
		ptr:   func(c *Config) any { return &c.PortTLSOnly }},
	{Name: "bind-ports", def: false, Reload: Restart,
		Usage: "bind each --port itself (where iptables is not allowed)",
		ptr:   func(c *Config) any { return &c.BindPorts }},
	{Name: "metrics-listen", def: "", Reload: Restart,
		Usage: "`ADDR` for /metrics, /healthz, /readyz and /upstreams",
		ptr:   func(c *Config) any { return &c.MetricsListen }},
	{Name: "handshake-timeout", def: time.Duration(0), Reload: Restart, DefaultText: DurationText(mux.DefaultHandshakeTimeout), effective: zeroMeans(mux.DefaultHandshakeTimeout),
		Usage: "deadline `D` for the routing phase (PROXY header + ClientHello)",
		ptr:   func(c *Config) any { return &c.HandshakeTimeout }},
	{Name: "header-timeout", def: time.Duration(0), Reload: Restart, DefaultText: DurationText(mux.DefaultHeaderTimeout), effective: zeroMeans(mux.DefaultHeaderTimeout),
		Usage: "deadline `D` for the TLS handshake and each request's headers; never a body timeout",
		ptr:   func(c *Config) any { return &c.HeaderTimeout }},
	{Name: "idle-timeout", def: time.Duration(0), Reload: Restart, DefaultText: DurationText(mux.DefaultIdleTimeout), effective: zeroMeans(mux.DefaultIdleTimeout),
		Usage: "close idle client keep-alive connections after `D`",
		ptr:   func(c *Config) any { return &c.IdleTimeout }},
	{Name: "idle-release-after", def: mux.DefaultIdleRelease, Reload: Restart,
		Usage: "free an idle HTTP/1 keep-alive connection's goroutine and buffers after `D`; the connection stays open (0: never)",
		ptr:   func(c *Config) any { return &c.IdleRelease }},
	{Name: "passthrough-idle-timeout", def: time.Duration(0), Reload: Restart, DefaultText: DurationText(mux.DefaultPassthroughIdleTimeout), effective: zeroMeans(mux.DefaultPassthroughIdleTimeout),
		Usage: "close a passthrough stream that carried no byte either way for `D`, or one of whose sides acknowledged none of the bytes waiting for it for D",
		ptr:   func(c *Config) any { return &c.PassthroughIdleTimeout }},
	{Name: "drain-timeout", def: time.Duration(0), DefaultText: "30s", // daemon.DefaultDrainTimeout (daemon imports config)
		Usage: "on SIGTERM, wait `D` for in-flight transfers",
		ptr:   func(c *Config) any { return &c.DrainTimeout }},
	{Name: "shutdown-delay", def: time.Duration(0), DefaultText: "none",
		Usage: "on SIGTERM, keep accepting for `D` with /readyz answering 503, so load balancers stop sending first; then drain (0: drain at once)",
		ptr:   func(c *Config) any { return &c.ShutdownDelay }},
	{Name: "max-conns", def: DefaultMaxConns, Reload: Restart,
		Usage: "`N` places (two descriptors each) beyond which connections are refused: a connection or SOCKS5 session takes one, a SOCKS5 stream two, a passthrough stream three (0: no limit; default from the fd limit)",
		ptr:   func(c *Config) any { return &c.MaxConns }},
	{Name: "max-conns-per-client", def: DefaultMaxConnsPerClient, Reload: Restart,
		Usage: "refuse a client address's connections beyond `N`, after PROXY protocol (0: no limit; default from --max-conns' default)",
		ptr:   func(c *Config) any { return &c.MaxConnsPerClient }},
	{Name: "max-conn-age", def: l7.DefaultMaxConnAge, Reload: Restart,
		Usage: "close a client connection after its first response past age `D`; transfers are never cut (0: never)",
		ptr:   func(c *Config) any { return &c.MaxConnAge }},
	{Name: "body-timeout", def: l7.DefaultBodyTimeout, Reload: Restart,
		Usage: "end a request whose body the client stops sending: each 64 KiB of it must come within `D` of waiting (0: never)",
		ptr:   func(c *Config) any { return &c.BodyTimeout }},
	{Name: "send-timeout", def: l7.DefaultSendTimeout, Reload: Restart,
		Usage: "end a response the client stops reading: HTTP/1.1, once it takes under 64 KiB in `D` of waiting; HTTP/2, once 64 KiB of it waits D to be taken (0: never)",
		ptr:   func(c *Config) any { return &c.SendTimeout }},
	{Name: "max-requests-per-client", def: DefaultMaxRequestsPerClient, Reload: Restart,
		Usage: "answer 429 to a client address with `N` requests in flight (0: no limit)",
		ptr:   func(c *Config) any { return &c.MaxRequestsPerClient }},
	// 0 counts each address too: the same running value as 128, so a reload
	// writing the one for the other changes nothing.
	{Name: "per-client-ipv6-prefix", def: 128, Reload: Restart, effective: zeroMeans(128),
		Usage: "count every IPv6 address within a prefix of length `N` as one client for the per-client limits (64: a host holding a /64 is one client; 128 or 0: each address)",
		ptr:   func(c *Config) any { return &c.PerClientIPv6Prefix }},
	{Name: "log-format", def: "text", choices: []string{"text", "json"}, Reload: Restart, effective: zeroMeans("text"),
		Usage: "log line format, `text|json`",
		ptr:   func(c *Config) any { return &c.LogFormat }},
	{Name: "log-level", def: "info", choices: []string{"debug", "info", "warn", "error"}, Reload: Restart, effective: func(v any) any { return cmp.Or(strings.ToLower(v.(string)), "info") },
		Usage: "log messages of level `L` and above: debug, info, warn or error",
		ptr:   func(c *Config) any { return &c.LogLevel }},
	{Name: "no-memory-trim", def: false,
		Usage: "keep freed memory instead of returning it to the OS once traffic goes quiet (a forced GC then; see README Memory)",
		ptr:   func(c *Config) any { return &c.NoMemoryTrim }},

	// `nexmux iptables` only.
	{Name: "delete", def: false, Command: "iptables",
		Usage: "print the rules that remove exactly what the apply rules add (with --load: remove them)",
		ptr:   func(c *Config) any { return &c.IptablesDelete }},
	{Name: "jumps", def: true, Command: "iptables",
		Usage: "include the PREROUTING/OUTPUT jumps (off when re-applying over existing jumps)",
		ptr:   func(c *Config) any { return &c.IptablesJumps }},
	{Name: "chain", def: iptables.DefaultChain, Command: "iptables",
		Usage: "nat `CHAIN` holding the rules (one per nexmux instance; not a built-in chain, nor, with --load, a chain holding rules nexmux did not write)",
		ptr:   func(c *Config) any { return &c.IptablesChain }},
	{Name: "load", def: false, Command: "iptables",
		Usage: "load the rules with <family>-restore --noflush instead of printing them; idempotent, adds only missing jumps",
		ptr:   func(c *Config) any { return &c.IptablesLoad }},
	{Name: "families", def: slices.Clone(iptables.Families), Command: "iptables",
		Usage: "`FAMILY` list --load drives, and the printed rules name (iptables, ip6tables)",
		ptr:   func(c *Config) any { return &c.IptablesFamilies }},
}

// Defaults are the values of settings nobody gave.
func Defaults() *Config {
	c := &Config{}
	for _, s := range settings {
		if d := s.Default(); d != nil {
			s.Set(c, d)
		}
	}
	return c
}

// RestartNeeded lists the settings whose effective values (defaults
// applied, spellings normalised) differ between old and new and that a
// reload cannot apply (see Setting.Reload). Writing out a default that was
// left unset, or another spelling of the running value, is no change.
func RestartNeeded(old, new *Config) []string {
	var out []string
	for _, s := range settings {
		changed := !equal(s.effectiveValue(old), s.effectiveValue(new))
		switch s.Reload {
		case Restart:
			if changed {
				out = append(out, s.Name)
			}
		case RestartWithBindPorts:
			if changed && old.BindPorts && new.BindPorts {
				out = append(out, s.Name+" (with --bind-ports)")
			}
		case RestartOnOff:
			if isZero(s.value(old)) != isZero(s.value(new)) {
				out = append(out, s.Name+" (on/off)")
			}
		}
	}
	return out
}

func equal(a, b any) bool {
	if la, ok := a.([]string); ok {
		return slices.Equal(la, b.([]string))
	}
	return a == b
}

func isZero(v any) bool {
	if l, ok := v.([]string); ok {
		return len(l) == 0
	}
	return v == nil || v == "" || v == false || v == time.Duration(0) || v == 0
}
