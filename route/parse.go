package route

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unicode/utf8"
)

func parseHostTarget(flag, s string) (string, Target, error) {
	host, ts, ok := strings.Cut(s, "=")
	if !ok {
		return "", Target{}, fmt.Errorf("%s %q: want HOST=TARGET (HOST=REPO or HOST=pull:GROUP,push:HOSTED)", flag, s)
	}
	var bad []string
	h, err := NormalizePattern(host)
	if err != nil {
		bad = append(bad, err.Error())
	}
	target, err := parseTarget(ts)
	if err != nil {
		bad = append(bad, err.Error())
	}
	if len(bad) > 0 {
		return "", Target{}, fmt.Errorf("%s %q: %s", flag, s, strings.Join(bad, "; "))
	}
	return h, target, nil
}

// parseTarget parses "REPO" or "pull:GROUP,push:HOSTED" (either order; a
// lone "pull:X" or "push:X" means X for both).
func parseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, errors.New("empty repository name")
	}
	if !strings.Contains(s, ":") {
		if err := ValidRepoName(s); err != nil {
			return Target{}, err
		}
		return Target{Pull: s, Push: s}, nil
	}
	var t Target
	for _, part := range strings.Split(s, ",") {
		kind, name, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return Target{}, fmt.Errorf("%q: want pull:REPO or push:REPO", part)
		}
		if err := ValidRepoName(name); err != nil {
			return Target{}, err
		}
		switch kind {
		case "pull":
			if t.Pull != "" {
				return Target{}, errors.New("pull repository given twice")
			}
			t.Pull = name
		case "push":
			if t.Push != "" {
				return Target{}, errors.New("push repository given twice")
			}
			t.Push = name
		default:
			return Target{}, fmt.Errorf("%q: unknown kind %q (want pull or push)", part, kind)
		}
	}
	if t.Pull == "" {
		t.Pull = t.Push
	}
	if t.Push == "" {
		t.Push = t.Pull
	}
	return t, nil
}

// ValidRepoName applies Nexus's own rule for repository names (letters,
// digits, '-', '_', '.'; not starting with '_' or '.'). Besides catching
// typos it guarantees a repository name can never smuggle a path segment
// ("..", "/", "%2e") into the upstream URL.
func ValidRepoName(s string) error {
	if s == "" {
		return errors.New("empty repository name")
	}
	if len(s) > 200 {
		return fmt.Errorf("repository name %.20q... is longer than 200 characters", s)
	}
	if s[0] == '.' || s[0] == '_' {
		return fmt.Errorf("repository name %q must not start with %q", s, s[0])
	}
	for _, c := range s { // by rune: the error names the character written
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("repository name %q has %q; Nexus allows letters, digits, '-', '_' and '.'", s, c)
		}
	}
	return nil
}

// NormalizePattern validates a host pattern ("team-a.example.com" or
// "*.example.com") and returns it lowercased without a trailing dot.
func NormalizePattern(p string) (string, error) {
	p = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(p), "."))
	if p == "" {
		return "", errors.New("empty host name")
	}
	name := p
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		name = rest
		if !strings.Contains(name, ".") {
			return "", fmt.Errorf("wildcard %q would match a whole top-level domain; use *.domain.tld", p)
		}
	}
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("host %q: '*' is allowed only as the whole first label (*.example.com)", p)
	}
	if net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")) != nil {
		return "", fmt.Errorf("host %q: an IP address is never sent as a TLS server name (use --default-route or --port)", p)
	}
	if strings.Contains(name, ":") {
		return "", fmt.Errorf("host %q: no port here (use --port PORT=TARGET for port routes)", p)
	}
	if len(name) > 253 {
		return "", fmt.Errorf("host %.20q...: longer than 253 characters", p)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("host %q: empty or over-long label", p)
		}
		// By rune, so the error names the character written, not a byte
		// of its UTF-8 encoding.
		for _, c := range label {
			switch {
			case c >= utf8.RuneSelf:
				return "", fmt.Errorf("host %q: %q is not allowed in a host name: give an internationalised name in its punycode (xn--) form", p, c)
			case !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'):
				return "", fmt.Errorf("host %q: %q is not allowed in a host name", p, c)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host %q: a label may not start or end with '-'", p)
		}
	}
	return p, nil
}

func validAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT: %v", s, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	// Caught here, a typo is a start-up error, not a failed dial on the
	// first connection.
	if why := HostProblem(host, port); why != "" {
		return fmt.Errorf("%q: %s", s, why)
	}
	if n, ok := ParsePort(port); !ok || n == 0 {
		return fmt.Errorf("%q: %q is not a port number (%s)", s, port, PortSyntax)
	}
	return nil
}

// HostProblem says why host, of a HOST:PORT setting that is dialled or
// bound as written, is no host name or IP address the Go resolver takes
// ("" when it is one); port only writes the fix into the message. DNS is
// case-blind and a trailing dot is absolute, so both are names.
func HostProblem(host, port string) string {
	a, why := hostProblem(host)
	// HOST:PORT is no URL: the dialer reads a zone's "%" literally, as
	// --upstream's URLs must escape it. "%25eth0", copied from a URL, would
	// name interface "25eth0"; a zone of digits is an interface index.
	if z := a.Zone(); why == "" && urlEscaped(z) {
		return fmt.Sprintf("zone %q is written as in a URL: write it %s", "%"+z, net.JoinHostPort(a.WithZone(z[2:]).String(), port))
	}
	return why
}

// URLHostProblem is HostProblem for the host of a URL that is dialled, as
// url.URL.Hostname gives it (its zone unescaped): a zone still starting
// "%25" was escaped twice ("%2525eth0") and names interface "25eth0".
func URLHostProblem(host string) string {
	a, why := hostProblem(host)
	if z := a.Zone(); why == "" && urlEscaped(z) {
		return fmt.Sprintf("zone %q is escaped twice: write it [%s]", "%"+z, strings.Replace(a.WithZone(z[2:]).String(), "%", "%25", 1))
	}
	return why
}

// urlEscaped: zone z, read after a bare '%', is "%25ZONE" (URL escaping)
// and no interface index.
func urlEscaped(z string) bool {
	return strings.HasPrefix(z, "25") && strings.Trim(z, "0123456789") != ""
}

// hostProblem is HostProblem's rule, less the URL-escaped zone it hints
// at; a is host's address, if it is one.
func hostProblem(host string) (a netip.Addr, why string) {
	a, err := netip.ParseAddr(host)
	if err != nil {
		name := strings.TrimSuffix(host, ".")
		if !IsHostName(name) {
			return netip.Addr{}, fmt.Sprintf("%q is not a host name or IP address", host)
		}
		// A last label of digits is no host name (RFC 3696 §2) but an
		// IPv4 address Go does not read ("127.0.0.01", "10.1"): it would
		// look it up in DNS, where C resolvers read "010" as octal.
		if last := name[strings.LastIndexByte(name, '.')+1:]; strings.Trim(last, "0123456789") == "" {
			return netip.Addr{}, fmt.Sprintf("%q is not a host name or IP address: an IPv4 address is four numbers 0-255, without leading zeros", host)
		}
		return netip.Addr{}, ""
	}
	// The kernel looks a zone up as an interface name or index: no
	// interface has any other byte in its name.
	z := a.Zone()
	for i := 0; i < len(z); i++ {
		if c := z[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return a, fmt.Sprintf("zone %q is not an interface name (letters, digits, '.', '-', '_') or index", z)
		}
	}
	return a, ""
}

// PortSyntax says how a port number is written, for error messages.
const PortSyntax = "1-65535, digits only: no sign, blank or leading zero"

// ParsePort reads a port number as people write one: ASCII digits without
// a sign or a leading zero, at most 65535; 0 is read, and callers say
// whether "any free port" is allowed. strconv.Atoi took "+8082" and
// "08082" as 8082 and "-0" as 0, while settings also compare ports as
// text (listen clashes, node ids, reloads).
func ParsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= 65535
}
