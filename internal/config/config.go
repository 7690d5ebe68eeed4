// Package config is the value nexmux runs from: every setting a user can give
// as a flag, an environment variable or a key of the YAML config file, and
// Build, which validates all of it at once and turns it into the runtime
// pieces (route table, certificates, upstream set).
package config

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/errlist"
	"github.com/nexmux/nexmux/internal/iptables"
	"github.com/nexmux/nexmux/internal/smallfile"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/socks5"
	"github.com/nexmux/nexmux/upstream"
)

// Config is every setting: each field but File is one entry of Settings,
// named after its long flag.
type Config struct {
	Listen   string
	Upstream []string
	// DrainUpstream, HealthInterval, AffinitySecretFile and
	// UpstreamMaxConns shape the Nexus node set (package upstream).
	DrainUpstream      []string
	HealthInterval     time.Duration
	AffinitySecretFile string
	UpstreamMaxConns   int
	Cert               []string
	Key                []string
	Route              []string
	Port               []string
	DefaultRoute       string
	Passthrough        []string
	BindPorts          bool
	MetricsListen      string

	// Mirror holds --mirror HOST/REGISTRY=REPO values (mirror names);
	// MirrorAuthFile the user:password sent to Nexus for mirror requests
	// that carry no credentials.
	Mirror         []string
	MirrorAuthFile string

	ProxyProtocolFrom        []string
	PassthroughProxyProtocol string

	Socks5Listen   string
	Socks5AuthFile string

	// PlainHTTPScheme is the scheme clients use for plain-HTTP port
	// routes: "http", or "https" when a TLS-ending load balancer fronts
	// them (URLs handed back must then say https).
	PlainHTTPScheme string
	// PortTLSOnly refuses plain HTTP on port routes.
	PortTLSOnly bool
	// StripHeader lists request headers never passed to Nexus.
	StripHeader []string

	HandshakeTimeout time.Duration
	HeaderTimeout    time.Duration
	IdleTimeout      time.Duration
	// IdleRelease frees an idle HTTP/1 connection's goroutine and buffers
	// after this long (0: never).
	IdleRelease  time.Duration
	DrainTimeout time.Duration
	// ShutdownDelay keeps accepting after SIGTERM, with /readyz failing,
	// before the drain starts.
	ShutdownDelay time.Duration
	MaxConns      int

	// Issue-17 limits (internal/config/hardening.go has their defaults).
	MaxRequestsPerClient int
	MaxConnsPerClient    int
	PerClientIPv6Prefix  int
	MaxConnAge           time.Duration
	// BodyTimeout bounds each read of a request body from the client and
	// SendTimeout the time a response waits on it without progress (0:
	// never).
	BodyTimeout time.Duration
	SendTimeout time.Duration
	// PassthroughIdleTimeout closes idle passthrough streams (0: default).
	PassthroughIdleTimeout time.Duration

	LogFormat string
	LogLevel  string

	// NoMemoryTrim keeps freed memory in the process instead of returning
	// it to the OS when traffic goes quiet (internal/memtrim).
	NoMemoryTrim bool

	// The iptables command's own settings (Setting.Command "iptables"):
	// keys of the config file that serve and check share with it and
	// ignore. IptablesChain is the nat chain holding the rules,
	// IptablesJumps adds the PREROUTING/OUTPUT jumps, IptablesLoad loads
	// the rules instead of printing them, IptablesDelete removes them and
	// IptablesFamilies lists the families --load drives.
	IptablesChain    string
	IptablesJumps    bool
	IptablesLoad     bool
	IptablesDelete   bool
	IptablesFamilies []string

	// File is the --config file the settings came from ("" for none);
	// reload watches it beside the certificates.
	File string
	// FileKeys are the settings File gave a value (an empty key gives
	// none): a flag or environment variable over one is warned of.
	FileKeys []string
	// FileLines are the lines of File that gave each of FileKeys its value:
	// the key's, then each list item's, so a problem can name its line.
	FileLines map[string][]int
	// FileValues are the values File gave each of FileKeys, before a flag
	// or variable over it: a reload that changes one warns again that it
	// is overridden.
	FileValues map[string]any
	// EnvWarnings are what the command found odd in the environment it
	// read (a Kubernetes service link in NEXMUX_PORT) or set aside from the
	// file (serve: a bad iptables key); Build adds them to the Runtime's
	// Warnings, which serve logs and check prints.
	EnvWarnings []string
}

// WatchedFiles lists the files whose change triggers a reload: every file
// the configuration names and Build reads.
func (c *Config) WatchedFiles() []string {
	var fs []string
	if c.File != "" {
		fs = append(fs, c.File)
	}
	fs = append(fs, c.Cert...)
	fs = append(fs, c.Key...)
	if c.Socks5AuthFile != "" {
		fs = append(fs, c.Socks5AuthFile)
	}
	if c.MirrorAuthFile != "" {
		fs = append(fs, c.MirrorAuthFile)
	}
	// Read by a reload but applied only by a restart: watched so that a
	// new secret is refused, naming it, when it comes, not at some later
	// unrelated reload.
	if c.AffinitySecretFile != "" {
		fs = append(fs, c.AffinitySecretFile)
	}
	return fs
}

// Runtime is a validated Config turned into what the server runs.
type Runtime struct {
	Config    *Config
	Table     *route.Table
	Certs     *mux.Certs
	Upstreams *l7.Upstreams
	// UpstreamSpec is the validated node list a reload applies to the
	// running set.
	UpstreamSpec *upstream.Spec
	ListenPort   int
	// ProxyPolicy is nil when no --proxy-protocol-from was given.
	ProxyPolicy func(net.Addr) proxyproto.Policy
	// PassthroughProxyHeader is the PROXY version sent to passthrough
	// backends (0: none).
	PassthroughProxyHeader byte
	// Socks5Credentials from --socks5-auth-file (nil: no authentication;
	// empty: nobody may log in).
	Socks5Credentials map[string]string
	// Warnings are logged at start; a reload logs those the configuration
	// it replaces did not draw, a certificate's, and Overridden's whose
	// file value changed.
	Warnings []string
	// Overridden are the warnings among Warnings of a file key a flag or
	// variable overrides, by setting.
	Overridden map[string]string
	// warnedProblems are the problems behind some of Warnings (by index),
	// for NoteWarnings to reword.
	warnedProblems map[int]error
	// MirrorAuth is the Authorization value for mirror requests without
	// one ("" when --mirror-auth-file is not set).
	MirrorAuth string
	// AffinitySecretSum is the SHA-256 of the --affinity-secret-file
	// secret read (zero: none): a reload compares it, since the running
	// node set keeps the secret it started with.
	AffinitySecretSum [sha256.Size]byte
}

// warnProblem adds err, a problem that is only a warning here, to
// Warnings.
func (b *Runtime) warnProblem(err error) {
	if b.warnedProblems == nil {
		b.warnedProblems = map[int]error{}
	}
	b.warnedProblems[len(b.Warnings)] = err
	b.Warnings = append(b.Warnings, err.Error())
}

// WarnOverridden adds warning, that the file's key name is overridden, to
// Warnings.
func (b *Runtime) WarnOverridden(name, warning string) {
	if b.Overridden == nil {
		b.Overridden = map[string]string{}
	}
	b.Overridden[name] = warning
	b.Warnings = append(b.Warnings, warning)
}

// NoteWarnings rewrites each warning Build made of a problem of the
// settings (a --port's REDIRECT loop) as note rewords that problem: cmd
// names the environment variables the settings came from, as it does in
// Build's errors.
func (b *Runtime) NoteWarnings(note func(error) error) {
	for i, err := range b.warnedProblems {
		b.Warnings[i] = note(err).Error()
	}
}

// Build validates c and returns every problem found, one error each, as a
// *multierror.Error so the user fixes them all in one go.
func (c *Config) Build() (*Runtime, error) {
	var errs *multierror.Error
	b := &Runtime{Config: c}

	var err error
	if b.ListenPort, err = addrPort("listen", c.Listen); err != nil {
		errs = multierror.Append(errs, err)
	}
	if c.MetricsListen != "" {
		if _, err := addrPort("metrics-listen", c.MetricsListen); err != nil {
			errs = multierror.Append(errs, err)
		}
	}

	if len(c.ProxyProtocolFrom) > 0 {
		if b.ProxyPolicy, err = mux.ProxyPolicy(c.ProxyProtocolFrom); err != nil {
			errs = errlist.Append(errs, err)
		}
	}
	switch c.PassthroughProxyProtocol {
	case "", "none":
	case "v1":
		b.PassthroughProxyHeader = 1
	case "v2":
		b.PassthroughProxyHeader = 2
	default:
		errs = multierror.Append(errs, fmt.Errorf("passthrough-proxy-protocol %q: want v1 or v2", c.PassthroughProxyProtocol))
	}
	if c.PassthroughProxyProtocol != "" && c.PassthroughProxyProtocol != "none" && len(c.Passthrough) == 0 {
		errs = multierror.Append(errs, relationError{errors.New("passthrough-proxy-protocol is set but there is no --passthrough route")})
	}
	if c.Socks5Listen != "" {
		if _, err := addrPort("socks5-listen", c.Socks5Listen); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	if c.Socks5AuthFile != "" {
		if c.Socks5Listen == "" {
			errs = multierror.Append(errs, relationError{errors.New("socks5-auth-file is set but socks5-listen is not")})
		}
		if b.Socks5Credentials, b.Warnings, err = socks5.LoadCredentials(c.Socks5AuthFile); err != nil {
			errs = errlist.Append(errs, err)
		}
	}
	var secret []byte
	if c.AffinitySecretFile != "" {
		if secret, err = upstream.LoadSecret(c.AffinitySecretFile); err != nil {
			errs = multierror.Append(errs, err)
		} else {
			b.AffinitySecretSum = sha256.Sum256(secret)
			if w := smallfile.OthersMayRead("affinity-secret-file", c.AffinitySecretFile); w != "" {
				b.Warnings = append(b.Warnings, w)
			}
		}
	}
	if b.UpstreamSpec, err = upstream.ParseSpec(c.Upstream, c.DrainUpstream); err != nil {
		errs = errlist.Append(errs, err)
	} else {
		b.Upstreams = l7.NewUpstreams(b.UpstreamSpec, nil, l7.UpstreamOptions{MaxConns: c.UpstreamMaxConns, Secret: secret})
	}
	if c.HealthInterval < 0 {
		errs = multierror.Append(errs, fmt.Errorf("health-interval %v: must not be negative", c.HealthInterval))
	} else if c.HealthInterval > 0 && c.HealthInterval < MinHealthInterval {
		// Every replica probes every node twice a round: a tiny interval
		// is a request storm on Nexus's status endpoints.
		errs = multierror.Append(errs, fmt.Errorf("health-interval %v: under %v every replica would probe every Nexus node in a tight loop", c.HealthInterval, MinHealthInterval))
	}
	if c.UpstreamMaxConns < 0 {
		errs = multierror.Append(errs, fmt.Errorf("upstream-max-conns %d: must not be negative", c.UpstreamMaxConns))
	}

	spec := route.Spec{
		Routes:      c.Route,
		Ports:       c.Port,
		Passthrough: c.Passthrough,
		Default:     c.DefaultRoute,
		Mirrors:     c.Mirror,
	}
	if c.MirrorAuthFile != "" {
		if len(c.Mirror) == 0 {
			errs = multierror.Append(errs, relationError{errors.New("mirror-auth-file is set but there is no --mirror")})
		}
		if b.MirrorAuth, err = loadMirrorAuth(c.MirrorAuthFile); err != nil {
			errs = multierror.Append(errs, err)
		} else if w := smallfile.OthersMayRead("mirror-auth-file", c.MirrorAuthFile); w != "" {
			b.Warnings = append(b.Warnings, w)
		}
	}
	if b.ListenPort != 0 {
		spec.ListenPorts = []int{b.ListenPort}
	}
	if b.Table, err = route.Build(spec); err != nil {
		errs = errlist.Append(errs, err)
	}
	checked, ports := checkedRoutes(b.Table, spec)
	b.Warnings = append(b.Warnings, sharedMirrorRepos(checked)...)
	errs = errlist.Append(errs, listenClashes(c, ports))
	if !c.BindPorts {
		// Port routes may come without iptables (a PROXY header's port,
		// SOCKS5): a warning here, an error in nexmux iptables.
		for _, err := range append(c.RedirectCaptures(ports), c.RedirectLoops(ports)...) {
			b.warnProblem(fmt.Errorf("%w; nexmux iptables refuses to write its rule", err))
		}
	}
	ownWarnings, err := ownListenerLoops(c, ports)
	b.Warnings = append(b.Warnings, ownWarnings...)
	errs = errlist.Append(errs, err)
	if len(c.Route) == 0 && len(c.Port) == 0 && len(c.Passthrough) == 0 && c.DefaultRoute == "" && len(c.Mirror) == 0 {
		errs = multierror.Append(errs, relationError{errors.New("no routes: give at least one --route HOST=TARGET, --port PORT=TARGET, --mirror HOST/REGISTRY=REPO or --default-route TARGET (TARGET: REPO or pull:GROUP,push:HOSTED)")})
	}

	if b.Certs, err = mux.LoadCerts(c.Cert, c.Key); err != nil {
		errs = errlist.Append(errs, err)
	} else if b.Warnings = append(b.Warnings, b.Certs.Warnings(CertExpiresSoon)...); b.Certs.Pairs() == 0 && needsCert(c) {
		errs = multierror.Append(errs, relationError{errors.New("no certificate: TLS routes need at least one --cert FILE --key FILE")})
	}
	if b.Certs.Pairs() > 0 { // one naming only IPs: its routes by name are not covered
		for _, r := range checked {
			if r.Kind != route.KindSNI || r.Passthrough != "" {
				continue
			}
			name := strings.TrimPrefix(r.Key, "*.")
			if strings.HasPrefix(r.Key, "*.") {
				name = "x." + name
			}
			if !b.Certs.Covers(name) {
				flag := "route" // the flag that named it
				if r.Mirror != nil {
					flag = "mirror"
				}
				errs = multierror.Append(errs, relationError{&ClashError{
					Err:   fmt.Errorf("%s %s: no --cert covers this name; clients would see the first certificate and fail verification", flag, r.Key),
					Other: "cert",
				}})
			}
		}
	}

	// A slice, not a map: problems are listed in the same order every run.
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"handshake-timeout", c.HandshakeTimeout}, {"header-timeout", c.HeaderTimeout},
		{"idle-timeout", c.IdleTimeout}, {"idle-release-after", c.IdleRelease}, {"drain-timeout", c.DrainTimeout},
		{"shutdown-delay", c.ShutdownDelay},
	} {
		if d.v < 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s %v: must not be negative", d.name, d.v))
		}
	}
	if c.MaxConns < 0 {
		errs = multierror.Append(errs, fmt.Errorf("max-conns %d: must not be negative", c.MaxConns))
	}
	switch c.PlainHTTPScheme {
	case "", "http", "https":
	default:
		errs = multierror.Append(errs, fmt.Errorf("plain-http-scheme %q: want http or https", c.PlainHTTPScheme))
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		errs = multierror.Append(errs, fmt.Errorf("log-format %q: want text or json", c.LogFormat))
	}
	switch strings.ToLower(c.LogLevel) {
	case "", "debug", "info", "warn", "error":
	default:
		errs = multierror.Append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	errs = c.checkHardening(errs)
	if err := errlist.Err(errs); err != nil {
		return nil, err
	}
	b.Warnings = append(b.Warnings, c.limitWarnings()...)
	b.Warnings = append(b.Warnings, c.EnvWarnings...)
	return b, nil
}

// CertExpiresSoon is how close to its expiry a served certificate draws a
// warning: at start, on each reload, and daily while it serves.
const CertExpiresSoon = 14 * 24 * time.Hour

// PortRoutes validates only --listen and --port: what `nexmux iptables`
// needs, in an init container that has no certificates mounted.
func (c *Config) PortRoutes() (listenPort int, t *route.Table, err error) {
	var errs *multierror.Error
	if listenPort, err = addrPort("listen", c.Listen); err != nil {
		errs = multierror.Append(errs, err)
	} else if listenPort == 0 {
		// Port 0 (any free port) is fine to serve on, but no rule can
		// redirect to it.
		errs = multierror.Append(errs, fmt.Errorf("listen %q: the rules need a fixed port", c.Listen))
	}
	spec := route.Spec{Ports: c.Port}
	if listenPort > 0 {
		spec.ListenPorts = []int{listenPort}
	}
	if t, err = route.Build(spec); err != nil {
		errs = errlist.Append(errs, err)
	}
	if err := errlist.Err(errs); err != nil {
		return 0, nil, err
	}
	return listenPort, t, nil
}

// RedirectCaptures reports the ports among ports that another of nexmux's
// listeners (--metrics-listen, --socks5-listen) uses. A port route's
// REDIRECT takes its port on every local address, so that listener's
// clients (probes, scrapers, SOCKS5) would reach the port's route instead.
func (c *Config) RedirectCaptures(ports []int) []error {
	var errs []error
	for _, l := range []struct{ flag, addr string }{{"metrics-listen", c.MetricsListen}, {"socks5-listen", c.Socks5Listen}} {
		_, ps, err := net.SplitHostPort(l.addr)
		p, ok := route.ParsePort(ps)
		if l.addr == "" || err != nil || !ok || p == 0 || !slices.Contains(ports, p) {
			continue
		}
		errs = append(errs, &ClashError{
			Err:   fmt.Errorf("port %d is the %s port (%s): a REDIRECT of it would send that listener's clients, on any local address, to port %d's route", p, l.flag, l.addr, p),
			Other: l.flag,
		})
	}
	return errs
}

// RedirectLoops reports the --upstream nodes and --passthrough backends on
// this host at a port among ports. The rules' OUTPUT jump REDIRECTs every
// connection this host makes to such a port on a local address, nexmux's
// own too: its connection to that backend would reach its listener, be
// routed by the port to the same backend, and so on, and the backend would
// see nothing. Values that do not parse are Build's to report.
func (c *Config) RedirectLoops(ports []int) []error {
	local := localAddrs()
	loops := func(addr string) (int, bool) {
		host, ps, err := net.SplitHostPort(addr)
		p, ok := route.ParsePort(ps)
		if err != nil || !ok || !slices.Contains(ports, p) {
			return 0, false
		}
		// Unreadable addresses count as loopback alone here: the rules are
		// written outside nexmux's sandbox (nexmux-iptables.service, the
		// init container), where they are read.
		return p, slices.ContainsFunc(resolveHost(host), func(a netip.Addr) bool { is, _ := local(dialed(a)); return is })
	}
	const why = "the REDIRECT of this host's own connections to that port (OUTPUT) would send nexmux's connections to it back to nexmux's listener, a loop that never reaches it"
	var errs []error
	for _, raw := range c.Upstream {
		if _, _, hostPort, _, err := upstream.Normalise(raw); err == nil {
			if p, loop := loops(hostPort); loop {
				errs = append(errs, &ClashError{Err: fmt.Errorf("upstream %s is on this host, at port %d of a --port route: %s", strings.TrimSpace(raw), p, why), Other: "port"})
			}
		}
	}
	for _, pt := range c.Passthrough {
		_, addr, _ := strings.Cut(pt, "=")
		addr = strings.TrimSpace(addr)
		if p, loop := loops(addr); loop {
			errs = append(errs, &ClashError{Err: fmt.Errorf("passthrough %s: %s is on this host, at port %d of a --port route: %s", strings.TrimSpace(pt), addr, p, why), Other: "port"})
		}
	}
	return errs
}

// IptablesProblems checks the settings only `nexmux iptables` reads (the
// chain, the families) as it does. serve ignores them, but one file serves
// every command: check reports them, so that a file it passes does not
// fail later at the init container or the iptables unit.
func (c *Config) IptablesProblems() error {
	_, ferr := iptables.ParseFamilies(c.IptablesFamilies)
	return errlist.Join(c.EmptyChainProblem(), iptables.Rules{Chain: c.IptablesChain}.ValidateChain(), ferr)
}

// EmptyChainProblem is the problem of a chain given empty (a script's
// --chain "$CHAIN" with CHAIN unset; the default is NEXMUX, and an empty
// variable is unset): taken as the default, it would replace the file's
// chain, and --load would rewrite, --delete remove, rules that may be
// another instance's.
func (c *Config) EmptyChainProblem() error {
	if c.IptablesChain != "" {
		return nil
	}
	return &SettingError{Setting: "chain", Err: fmt.Errorf(`chain "": no chain named (an unset variable?): give its name, or leave --chain out for the file's chain or the default %s`, iptables.DefaultChain)}
}

// addrPort checks a [HOST]:PORT setting and returns its port (0 allowed:
// any free port, as tests use).
func addrPort(flag, addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want [HOST]:PORT: %v", flag, addr, err)
	}
	// net.Listen looks the host up as written: one with a blank or a byte
	// no host name has, an IPv4 address Go does not read or a zone no
	// interface has would pass here and fail only at bind.
	if why := route.HostProblem(host, port); host != "" && why != "" {
		return 0, fmt.Errorf("%s %q: %s", flag, addr, why)
	}
	p, ok := route.ParsePort(port)
	if !ok {
		return 0, fmt.Errorf("%s %q: %q is not a port (0-65535, digits only: no sign, blank or leading zero)", flag, addr, port)
	}
	return p, nil
}

// checkedRoutes returns the routes and port-route ports that the checks
// reading the table (certificate coverage, --bind-ports clashes) look at:
// t's, or, when the table did not build, those of every route that is valid
// on its own, each key once, so that one invalid route hides no other
// problem (every problem at once).
func checkedRoutes(t *route.Table, spec route.Spec) ([]*route.Route, []int) {
	if t != nil {
		return t.Routes(), t.Ports()
	}
	seen := map[string]bool{}
	var routes []*route.Route
	var ports []int
	one := func(s route.Spec) {
		s.ListenPorts = spec.ListenPorts
		pt, err := route.Build(s)
		if err != nil {
			return // reported by the whole table's Build
		}
		for _, r := range pt.Routes() {
			if !seen[r.Key] {
				seen[r.Key] = true
				routes = append(routes, r)
			}
		}
		for _, p := range pt.Ports() {
			if !slices.Contains(ports, p) {
				ports = append(ports, p)
			}
		}
	}
	for _, s := range spec.Routes {
		one(route.Spec{Routes: []string{s}})
	}
	for _, s := range spec.Mirrors {
		one(route.Spec{Mirrors: []string{s}})
	}
	for _, s := range spec.Ports {
		one(route.Spec{Ports: []string{s}})
	}
	slices.SortStableFunc(routes, func(a, b *route.Route) int { return strings.Compare(a.Key, b.Key) })
	slices.Sort(ports)
	return routes, ports
}

// listenClashes reports the addresses nexmux would bind twice: the same
// port on the same host, or on a wildcard host (":8443", "0.0.0.0:8443")
// and any other. serve would fail on the second bind, so check says so
// first. Port 0 (any free port) never clashes.
func listenClashes(c *Config, boundPorts []int) error {
	type bind struct{ setting, what, host, port string }
	var binds []bind
	add := func(setting, what, addr string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" {
			return // reported by addrPort, or any free port
		}
		binds = append(binds, bind{setting, what, host, port})
	}
	add("listen", "listen", c.Listen)
	if c.MetricsListen != "" {
		add("metrics-listen", "metrics-listen", c.MetricsListen)
	}
	if c.Socks5Listen != "" {
		add("socks5-listen", "socks5-listen", c.Socks5Listen)
	}
	if c.BindPorts {
		host, _, _ := net.SplitHostPort(c.Listen)
		for _, p := range boundPorts {
			add("port", fmt.Sprintf("port %d (--bind-ports)", p), net.JoinHostPort(host, strconv.Itoa(p)))
		}
	}
	// IP hosts are compared as addresses, not text: "[0:0::1]" is "[::1]",
	// and Go binds an IPv4-mapped "[::ffff:127.0.0.1]" as 127.0.0.1.
	ip := func(h string) (netip.Addr, bool) {
		a, err := netip.ParseAddr(h)
		return a.Unmap(), err == nil
	}
	wild := func(h string) bool {
		a, ok := ip(h)
		return h == "" || ok && a.IsUnspecified()
	}
	// A host name is looked up only for two binds on one port, once each.
	resolved := map[string]netip.Addr{}
	addrOf := func(h string) (netip.Addr, bool) {
		if a, ok := ip(h); ok || h == "" {
			return a, ok
		}
		a, seen := resolved[h]
		if !seen {
			a, _ = listenAddr(h)
			resolved[h] = a // the zero Addr: unresolved, serve says why
		}
		return a, a.IsValid()
	}
	same := func(a, b string) bool {
		x, okx := addrOf(a)
		y, oky := addrOf(b)
		if okx && oky {
			return x == y
		}
		return strings.EqualFold(a, b)
	}
	var errs []error
	for i := range binds {
		for _, b := range binds[:i] {
			a := binds[i]
			if a.port == b.port && (same(a.host, b.host) || wild(a.host) || wild(b.host)) {
				errs = append(errs, relationError{&ClashError{
					Err:   fmt.Errorf("%s %s: the same address as %s %s: one of them must move", a.what, net.JoinHostPort(a.host, a.port), b.what, net.JoinHostPort(b.host, b.port)),
					Other: b.setting,
				}})
			}
		}
	}
	return errlist.Join(errs...)
}

// ownListenerLoops reports the --upstream nodes and --passthrough backends
// that are one of nexmux's own listeners: its --listen, or a port it binds
// with --bind-ports. Each request or stream would come back in, be routed
// the same way to the same backend, and so on until a limit refused one.
// Backends on other ports, or on addresses the listener does not take,
// are left alone; a backend that does not parse is reported elsewhere. One
// that may be this host's when its addresses could not be read is warned
// of instead.
func ownListenerLoops(c *Config, boundPorts []int) (warnings []string, _ error) {
	lhost, lp, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, nil
	}
	type own struct {
		port int
		what string
	}
	var owns []own
	if p, ok := route.ParsePort(lp); ok && p != 0 {
		owns = append(owns, own{p, "--listen " + c.Listen})
	}
	if c.BindPorts {
		for _, p := range boundPorts {
			owns = append(owns, own{p, fmt.Sprintf("port %d (--bind-ports)", p)})
		}
	}
	local := localAddrs()
	var unread error // set when a backend's answer needed the unreadable addresses
	takes := func(b netip.Addr) bool {
		b = dialed(b)
		switch l, err := netip.ParseAddr(lhost); {
		case lhost == "" || err == nil && l.Unmap().IsUnspecified():
			// ":P", "0.0.0.0:P" and "[::]:P" all take both families
			// (Go listens on [::] for each).
			is, err := local(b)
			if err != nil {
				unread = err
			}
			return is
		default:
			a, ok := listenAddr(lhost)
			return ok && a == b
		}
	}
	// ownOf names the listener addr reaches, if any, or the one it may
	// reach when this host's addresses could not be read (unsure).
	ownOf := func(addr string) (what string, loop, unsure bool) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", false, false
		}
		n, ok := route.ParsePort(port)
		if !ok {
			return "", false, false
		}
		for _, o := range owns {
			if o.port != n {
				continue
			}
			unread = nil
			if slices.ContainsFunc(resolveHost(host), takes) {
				return o.what, true, false
			}
			if unread != nil {
				return o.what, false, true
			}
		}
		return "", false, false
	}
	unsure := func(backend, what string) {
		warnings = append(warnings, fmt.Sprintf("%s: cannot tell whether it is nexmux's own %s, as this host's addresses could not be read (%v; a sandbox refusing AF_NETLINK sockets?): if it is, everything sent to it comes back to nexmux", backend, what, unread))
	}
	var errs []error
	for _, raw := range c.Upstream {
		if _, _, hostPort, _, err := upstream.Normalise(raw); err == nil {
			switch what, loop, maybe := ownOf(hostPort); {
			case loop:
				errs = append(errs, relationError{fmt.Errorf("upstream %s is nexmux's own %s: every request would come back to nexmux, never to Nexus", strings.TrimSpace(raw), what)})
			case maybe:
				unsure("upstream "+strings.TrimSpace(raw), what)
			}
		}
	}
	for _, p := range c.Passthrough {
		name, addr, _ := strings.Cut(p, "=")
		addr = strings.TrimSpace(addr)
		switch what, loop, maybe := ownOf(addr); {
		case loop:
			errs = append(errs, relationError{fmt.Errorf("passthrough %s: %s is nexmux's own %s: every stream for %s would come back to nexmux", strings.TrimSpace(p), addr, what, strings.TrimSpace(name))})
		case maybe:
			unsure("passthrough "+strings.TrimSpace(p), what)
		}
	}
	return warnings, errlist.Join(errs...)
}

// dialed is the address a dial to a reaches: 0.0.0.0 and :: are loopback.
func dialed(a netip.Addr) netip.Addr {
	switch a {
	case netip.IPv4Unspecified():
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case netip.IPv6Unspecified():
		return netip.IPv6Loopback()
	}
	return a
}

// localAddrs returns a test of whether an address is this host's (a
// loopback one, or one of its interfaces'), reading the interfaces once,
// when first asked about an address that is not loopback. The error says
// they could not be read (a sandbox without AF_NETLINK): then only
// loopback counts as this host's.
func localAddrs() func(netip.Addr) (bool, error) {
	var local []netip.Addr
	var readErr error
	read := false
	return func(a netip.Addr) (bool, error) {
		if a.IsLoopback() {
			return true, nil
		}
		if !read {
			read = true
			ifs, err := net.Interfaces()
			readErr = err
			for _, ifc := range ifs {
				as, err := ifc.Addrs()
				if readErr == nil {
					readErr = err
				}
				for _, ia := range as {
					if n, ok := ia.(*net.IPNet); ok {
						if ip, ok := netip.AddrFromSlice(n.IP); ok {
							ip = ip.Unmap()
							// A link-local address is dialed with its
							// interface as zone (fe80::1%eth0): only that
							// spelling reaches this host.
							if ip.Is6() && (ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast()) {
								ip = ip.WithZone(ifc.Name)
							}
							local = append(local, ip)
						}
					}
				}
			}
		}
		return slices.Contains(local, a), readErr
	}
}

// listenAddr is the address net.Listen binds for host h: its first IPv4
// address, else its first (false: h does not resolve).
func listenAddr(h string) (netip.Addr, bool) {
	as := resolveHost(h)
	if len(as) == 0 {
		return netip.Addr{}, false
	}
	if i := slices.IndexFunc(as, netip.Addr.Is4); i > 0 {
		return as[i], true
	}
	return as[0], true
}

// resolveHost returns the addresses h stands for, IPv4-mapped ones
// unmapped: h itself if it is one, else what the resolver answers within
// 2 s (nothing if it does not: serve reports that itself).
func resolveHost(h string) []netip.Addr {
	if a, err := netip.ParseAddr(h); err == nil {
		return []netip.Addr{a.Unmap()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	as, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
	for i := range as {
		as[i] = as[i].Unmap()
	}
	return as
}

// MinHealthInterval is the shortest --health-interval taken.
const MinHealthInterval = 100 * time.Millisecond

// relationError is a problem of how settings go together (one needs
// another, two clash, a name no certificate covers), not of one value.
type relationError struct{ error }

// ClashError is a problem of a value with another setting's: Other names
// that setting, so that the problem can say where its value came from.
type ClashError struct {
	Err   error
	Other string
}

func (e *ClashError) Error() string        { return e.Err.Error() }
func (e *ClashError) Unwrap() error        { return e.Err }
func (e *ClashError) OtherSetting() string { return e.Other }

func (e relationError) Unwrap() error { return e.error }

// Relational reports a problem of Build's about how settings go together:
// with the config file unreadable, the file may have held its other half
// (the --cert of a --key, the --upstream a drained node is among).
func Relational(err error) bool {
	return errors.As(err, new(relationError)) || errors.Is(err, mux.ErrUnpaired) || errors.Is(err, upstream.ErrNotANode)
}

// needsCert: port routes may be plain HTTP and passthrough routes bring
// their own TLS; everything else terminates TLS here.
func needsCert(c *Config) bool {
	return len(c.Route) > 0 || c.DefaultRoute != "" || len(c.Mirror) > 0
}

// Describe renders the validated table for `nexmux check`.
func (b *Runtime) Describe() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "listen %s -> nexus %s", b.Config.Listen, strings.Join(b.Config.Upstream, ", "))
	if ctx := b.Upstreams.ContextPath(); ctx != "" {
		fmt.Fprintf(&sb, " (context path %s)", ctx)
	}
	sb.WriteString("\n")
	for _, r := range b.Table.Routes() {
		switch {
		case r.Mirror != nil:
			sb.WriteString(describeMirror(b, r))
		case r.Passthrough != "":
			fmt.Fprintf(&sb, "  %-32s passthrough to %s\n", r.Key, r.Passthrough)
		default:
			fmt.Fprintf(&sb, "  %-32s %s\n", r.Key, describeTarget(b, r.Target))
		}
	}
	// IP addresses too: a pair may name nothing else (--default-route).
	names := append(b.Certs.Names(), b.Certs.IPs()...)
	if len(names) == 0 {
		names = []string{"none (port routes serve plain HTTP only)"}
	}
	fmt.Fprintf(&sb, "certificates: %s\n", strings.Join(names, ", "))
	return sb.String()
}

func describeTarget(b *Runtime, t route.Target) string {
	prefix := b.Upstreams.ContextPath() + "/repository/"
	if !t.Split() {
		return prefix + t.Pull + "/"
	}
	return "pull " + prefix + t.Pull + "/, push " + prefix + t.Push + "/"
}
