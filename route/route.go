// Package route is nexmux's route table: which Nexus repository (or passthrough
// backend) a connection belongs to, decided by TLS server name or by port.
//
// A Table is one immutable value, built and validated once from the strings
// users type on the command line (every problem reported together), and
// swapped whole on reload. Lookups allocate nothing.
package route

import (
	"fmt"
	"iter"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"

	"github.com/nexmux/nexmux/internal/errlist"
)

// Target is what a route serves: a Nexus repository for pulls and one for
// pushes. Most routes name a single repository (Pull == Push); a split target
// gives a team one name for both on Nexus OSS, which refuses pushes to groups.
type Target struct {
	Pull string // group (or any repository) that reads go to
	Push string // hosted repository that writes go to
}

// Split reports whether reads and writes go to different repositories.
func (t Target) Split() bool { return t.Pull != t.Push }

// Owns reports whether repo is one of the target's repositories: the only
// repositories a client on this route may ever reach.
func (t Target) Owns(repo string) bool { return repo == t.Pull || repo == t.Push }

func (t Target) String() string {
	if !t.Split() {
		return t.Pull
	}
	return "pull:" + t.Pull + ",push:" + t.Push
}

// Repo picks the repository for a request whose credentials say nothing
// about its session (Basic or none); see Pick for the whole rule.
func (t Target) Repo(method, path, query string) string {
	return t.Pick(Request{Method: method, Path: path, Query: query})
}

// dirIs reports whether the path up to its last '/' ends in dir. Registry
// paths end in ".../<name>/blobs/<digest>" or ".../<name>/manifests/<ref>",
// and digests and references hold no '/', so this looks at the endpoint and
// not at image names, which may have components called "blobs".
func dirIs(path, dir string) bool {
	i := strings.LastIndexByte(path, '/')
	return i >= 0 && strings.HasSuffix(path[:i], dir)
}

// pushScope reports whether a token request's query asks for a repository
// scope with the push action ("scope=repository:app:pull,push", usually
// encoded; several scope parameters and space-separated scopes allowed). A
// "push" inside an image name ("repository:pushgateway:pull") is not a push,
// nor is a registry scope's "*" ("registry:catalog:*", crane catalog): it
// writes nothing, and a marked token would send its HEADs to hosted.
func pushScope(query string) bool {
	for range pushScopes(query) {
		return true
	}
	return false
}

// pushScopes yields the image name of every repository scope with the push
// action (or "*") in a token request's query, as pushScope reads them.
func pushScopes(query string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for param := range strings.SplitSeq(query, "&") {
			name, v, ok := strings.Cut(param, "=")
			if !ok || name != "scope" && !scopeEncoded(name) {
				continue
			}
			if strings.Contains(v, "%") || strings.Contains(v, "+") {
				var err error
				if v, err = url.QueryUnescape(v); err != nil {
					continue
				}
			}
			for scope := range strings.FieldsSeq(v) {
				if !repositoryScope(scope) {
					continue
				}
				i := strings.LastIndexByte(scope, ':')
				if i < 0 {
					continue // "repository" alone: no actions
				}
				_, image, _ := strings.Cut(scope[:i], ":")
				for a := range strings.SplitSeq(scope[i+1:], ",") {
					if a == "push" || a == "*" {
						if !yield(image) {
							return
						}
						break
					}
				}
			}
		}
	}
}

// repositoryScope reports a scope of resource type "repository", with or
// without a resource class ("repository(plugin):name:pull").
func repositoryScope(scope string) bool {
	typ, _, _ := strings.Cut(scope, ":")
	return typ == "repository" || strings.HasPrefix(typ, "repository(")
}

// scopeEncoded reports a parameter name that Jetty decodes to "scope"
// ("%73cope"): Nexus reads the scope under it.
func scopeEncoded(name string) bool {
	if !strings.Contains(name, "%") {
		return false
	}
	n, err := url.QueryUnescape(name)
	return err == nil && n == "scope"
}

// Kind is how a route is chosen for a connection.
type Kind int

const (
	// KindSNI routes by TLS server name (exact or wildcard).
	KindSNI Kind = iota
	// KindPort routes by the (legacy connector) port a client dialled.
	KindPort
	// KindDefault takes clients that send no server name.
	KindDefault
)

// Route is one entry of the table.
type Route struct {
	Kind Kind
	// Key is how the route was declared: a host pattern ("a.example.com",
	// "*.example.com"), ":PORT" for a port route, or "default".
	Key string
	// Target is set for routes that terminate TLS and go to Nexus.
	Target Target
	// Passthrough is set (host:port) for routes whose TCP stream is copied
	// raw to another TLS server.
	Passthrough string
	// Mirror is set for mirror names (--mirror): several registries, each
	// served by its own repository. Target is then zero.
	Mirror *Mirror
}

func (r *Route) String() string {
	if r.Mirror != nil {
		return r.Key + " => " + r.Mirror.String()
	}
	if r.Passthrough != "" {
		return r.Key + " => passthrough " + r.Passthrough
	}
	return r.Key + " => " + r.Target.String()
}

// Spec holds the route declarations exactly as typed on the command line.
type Spec struct {
	Routes      []string // HOST=TARGET
	Ports       []string // PORT=TARGET
	Passthrough []string // HOST=ADDR
	Default     string   // TARGET for clients that send no server name
	Mirrors     []string // HOST/REGISTRY=REPO
	// ListenPorts are ports nexmux listens on for SNI routing; a port route
	// on one of them would shadow every SNI route, so it is refused.
	ListenPorts []int
}

// Table maps server names and ports to routes. Its zero value routes nothing.
type Table struct {
	exact    map[string]*Route
	wildcard map[string]*Route // keyed by the suffix after "*."
	ports    map[int]*Route
	def      *Route
	all      []*Route
}

// Build parses and validates spec. It returns every problem found, one per
// line in a *multierror.Error, so users fix their flags in one go.
func Build(spec Spec) (*Table, error) {
	t := &Table{
		exact:    map[string]*Route{},
		wildcard: map[string]*Route{},
		ports:    map[int]*Route{},
	}
	var errs *multierror.Error
	listen := map[int]bool{}
	for _, p := range spec.ListenPorts {
		listen[p] = true
	}
	for _, s := range spec.Routes {
		host, target, err := parseHostTarget("route", s)
		if err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		errs = multierror.Append(errs, t.addHost(&Route{Kind: KindSNI, Key: host, Target: target}, "route "+s)...)
	}
	for _, s := range spec.Passthrough {
		host, rest, ok := strings.Cut(s, "=")
		if !ok {
			errs = multierror.Append(errs, fmt.Errorf("passthrough %q: want HOST=ADDR", s))
			continue
		}
		h, herr := NormalizePattern(host)
		if herr != nil {
			errs = multierror.Append(errs, fmt.Errorf("passthrough %q: %v", s, herr))
		}
		aerr := validAddr(rest)
		if aerr != nil {
			errs = multierror.Append(errs, fmt.Errorf("passthrough %q: %v", s, aerr))
		}
		if herr != nil || aerr != nil {
			continue
		}
		errs = multierror.Append(errs, t.addHost(&Route{Kind: KindSNI, Key: h, Passthrough: rest}, "passthrough "+s)...)
	}
	errs = multierror.Append(errs, t.parseMirrors(spec.Mirrors)...)
	for _, s := range spec.Ports {
		ps, ts, ok := strings.Cut(s, "=")
		if !ok {
			errs = multierror.Append(errs, fmt.Errorf("port %q: want PORT=TARGET (PORT=REPO or PORT=pull:GROUP,push:HOSTED)", s))
			continue
		}
		// Blanks around the '=' are the pair's layout, as around the target.
		port, ok := ParsePort(strings.TrimSpace(ps))
		var bad []error
		if !ok || port == 0 {
			bad = append(bad, fmt.Errorf("port %q: %q is not a port number (%s)", s, ps, PortSyntax))
		} else if listen[port] {
			bad = append(bad, fmt.Errorf("port %q: %d is the --listen port, where routing is by server name; a port route there would shadow every --route", s, port))
		}
		target, err := parseTarget(ts)
		if err != nil {
			bad = append(bad, fmt.Errorf("port %q: %v", s, err))
		}
		if len(bad) > 0 {
			errs = multierror.Append(errs, bad...)
			continue
		}
		if prev, dup := t.ports[port]; dup {
			errs = multierror.Append(errs, fmt.Errorf("port %q: port %d already routed to %s", s, port, prev.Target))
			continue
		}
		r := &Route{Kind: KindPort, Key: ":" + strconv.Itoa(port), Target: target}
		t.ports[port] = r
		t.all = append(t.all, r)
	}
	if spec.Default != "" {
		target, err := parseTarget(spec.Default)
		if err != nil {
			errs = multierror.Append(errs, fmt.Errorf("default-route %q: %v", spec.Default, err))
		} else {
			t.def = &Route{Kind: KindDefault, Key: "default", Target: target}
			t.all = append(t.all, t.def)
		}
	}
	if err := errlist.Err(errs); err != nil {
		return nil, err
	}
	sort.SliceStable(t.all, func(i, j int) bool { return t.all[i].Key < t.all[j].Key })
	return t, nil
}

// HostClashError is a host that what (a setting and its value) routes
// when the route Prev already does.
type HostClashError struct {
	What, Host string
	Prev       *Route
}

func (e *HostClashError) Error() string {
	return fmt.Sprintf("%s: %s is already routed (%s)", e.What, e.Host, e.Prev)
}

// OtherSetting is the setting that gave Prev: "route", "passthrough" or
// "mirror", so that a problem can say where that one came from.
func (e *HostClashError) OtherSetting() string {
	switch {
	case e.Prev.Passthrough != "":
		return "passthrough"
	case e.Prev.Mirror != nil:
		return "mirror"
	}
	return "route"
}

func (t *Table) addHost(r *Route, what string) []error {
	m, key := t.exact, r.Key
	if suffix, ok := strings.CutPrefix(r.Key, "*."); ok {
		m, key = t.wildcard, suffix
	}
	if prev, dup := m[key]; dup {
		return []error{&HostClashError{What: what, Host: r.Key, Prev: prev}}
	}
	m[key] = r
	t.all = append(t.all, r)
	return nil
}

// LookupHost returns the route for a server name or Host header value (port,
// case and one trailing dot ignored): an exact route first, then the most
// specific wildcard. It returns nil when nothing matches.
func (t *Table) LookupHost(name string) *Route {
	if t == nil || name == "" {
		return nil
	}
	name = CanonicalHost(name)
	// A wildcard must not take a name no host can have (UTF-8, an empty
	// or over-long label): it routes nowhere, as an unknown name does.
	if !IsHostName(name) {
		return nil
	}
	if r := t.exact[name]; r != nil {
		return r
	}
	// Walk up the labels: "x.b.example.com" tries *.b.example.com, then
	// *.example.com, then *.com, so the longest suffix wins.
	for i := strings.IndexByte(name, '.'); i >= 0; {
		rest := name[i+1:]
		if r := t.wildcard[rest]; r != nil {
			return r
		}
		j := strings.IndexByte(rest, '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return nil
}

// LookupServerName is LookupHost for a TLS server name as sni.ReadClientHello
// gives it. A server name has no port: one with a colon is no host name,
// where LookupHost would cut it off and route what is left.
func (t *Table) LookupServerName(name string) *Route {
	if strings.IndexByte(name, ':') >= 0 {
		return nil
	}
	return t.LookupHost(name)
}

// LookupPort returns the route declared for a (legacy connector) port, or nil.
func (t *Table) LookupPort(port int) *Route {
	if t == nil {
		return nil
	}
	return t.ports[port]
}

// HasPorts reports whether any port has a port route.
func (t *Table) HasPorts() bool { return t != nil && len(t.ports) > 0 }

// Default returns the route for clients that send no server name, or nil.
func (t *Table) Default() *Route {
	if t == nil {
		return nil
	}
	return t.def
}

// Ports lists the ports that have port routes, ascending.
func (t *Table) Ports() []int {
	if t == nil {
		return nil
	}
	ps := make([]int, 0, len(t.ports))
	for p := range t.ports {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	return ps
}

// Routes lists every route, sorted by key.
func (t *Table) Routes() []*Route {
	if t == nil {
		return nil
	}
	return append([]*Route(nil), t.all...)
}

// Len is the number of routes.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.all)
}

// CanonicalHost is the form server names from ClientHellos and Host headers
// are compared in: lowercase, without a port and one trailing dot. It only
// allocates when the name has upper-case letters.
func CanonicalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// IsHostName reports whether name is a host name, without a trailing dot:
// at most 253 bytes of dot-separated labels of 1 to 63 letters (either
// case), digits, '-' and '_', none starting or ending with '-'
// (RFC 1035, RFC 1123; an IDN is its xn-- A-label, RFC 5890). '_' is
// allowed as route patterns (NormalizePattern) and crypto/x509 allow it:
// internal names carry it. It does not allocate.
func IsHostName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	start := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' {
			if !labelEnds(name, start, i) {
				return false
			}
			start = i + 1
			continue
		}
		if !hostByte[c] {
			return false
		}
	}
	return labelEnds(name, start, len(name))
}

// labelEnds reports whether name[start:end] is a label's valid extent.
func labelEnds(name string, start, end int) bool {
	return end > start && end-start <= 63 && name[start] != '-' && name[end-1] != '-'
}

// hostByte holds the bytes a host name's label may have.
var hostByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
	}
	return t
}()
