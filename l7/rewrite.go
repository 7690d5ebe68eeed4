package l7

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nexmux/nexmux/route"
)

// publicURLs rewrites URLs Nexus hands back into the form the client used:
// "<scheme>://<Host as sent>/v2/...". Nexus produces three shapes depending
// on version and route (relative "/v2/...", relative "<ctx>/repository/R/v2/...",
// absolute "http(s)://host[:port]<ctx>/repository/R/v2/..."); all three map
// to the same public URL. Nothing it hands the client leads past nexmux:
// a URL on Nexus's own hosts that names no repository of the route goes to
// the public name too (where nexmux refuses it), and one on another host is
// left out, except a blob read's redirect (an S3 pre-signed URL).
type publicURLs struct {
	base      string // "https://team.example.com:8443"; "" keeps results relative
	ctxPath   string
	target    route.Target
	hostnames []string // lowercase host names that mean "this Nexus or us"
	// nodes are the upstream nodes' "host:port" (hostOf's host, the port
	// their scheme implies where they name none): set for a blob read's
	// redirect only, the one answer that may lead to another port.
	nodes []string
	// linkPrefix goes before the "/v2/..." a Link of the route's own
	// repositories maps to: "[ctx]/repository/<hosted>" for a page a split
	// name's push repository answered, whose next page "/v2/..." would
	// read from the group instead.
	linkPrefix string
	prefix     string // linkPrefix while a Link is rewritten, else ""
}

// rewrite returns the public form of u, and false when u must not reach the
// client at all. blobRedirect says u is the Location of a 3xx answer to a
// blob read: a blob store may send the client to a host of its own.
//
// u is judged as a WHATWG parser reads it (clientForm): where that is not
// its text, what goes as it came goes as it came, and what maps onto the
// public name keeps its path and query byte for byte or is left out (a
// blob read's redirect, never left out, goes to the public name's root).
func (p *publicURLs) rewrite(u string, blobRedirect bool) (string, bool) {
	n := clientForm(u)
	if blobRedirect {
		n = authorityForm(n)
	}
	r, ok := p.judge(n, blobRedirect)
	switch {
	case n == u || !ok:
		return r, ok
	case r == n:
		return u, true
	case strings.HasSuffix(u, strings.TrimPrefix(r, p.base)):
		return r, true
	case blobRedirect:
		return p.base + "/", true
	}
	return "", false
}

// judge is rewrite of a URL whose text is what clients read.
func (p *publicURLs) judge(u string, blobRedirect bool) (string, bool) {
	var host, path, scheme, authority string
	absolute := false
	switch {
	case strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//"):
		path = u
	default:
		rest, ok := cutScheme(u)
		if !ok {
			// A relative reference resolves onto the public name; any
			// other scheme is nothing Nexus hands a registry client.
			if hasScheme(u) && !blobRedirect {
				return "", false
			}
			return u, true
		}
		absolute = true
		scheme, authority = u[:len(u)-len(rest)], rest
		path = "/"
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			authority, path = rest[:i], rest[i:]
			if path[0] != '/' {
				path = "/" + path
			}
		}
		host = hostOf(authority)
	}
	// On another host the path is a front's (a Base URL's): its prefix
	// need not be the context path.
	if mapped, ok := p.mapPath(path, absolute && !p.ours(host)); ok {
		if absolute && blobRedirect && !p.ours(host) {
			return u, true
		}
		// On any host: a Nexus whose Base URL names another host, or a
		// connector port, still means the route's own repository.
		return p.base + p.prefix + mapped, true
	}
	switch {
	case !absolute:
		// On the public name, where nexmux refuses what is not the route's.
		return u, true
	case p.ours(host):
		if blobRedirect && !p.nexusPath(path) && !p.atNode(scheme, authority) {
			return u, true // a blob store beside Nexus, on the same host
		}
		// Another repository, the REST API: only through nexmux, which
		// refuses them, never straight to Nexus.
		return p.base + path, true
	case blobRedirect:
		return u, true
	}
	return "", false
}

// clientForm is u as a WHATWG URL parser (browsers, JavaScript's fetch)
// reads it where that differs from its text: blanks and C0 controls
// trimmed at its ends, tabs and newlines dropped, '\' read as '/' before
// the query. Judged in that form, a URL cannot lead such a client to a
// node ("/\node:8081/...") while it reads as a path on the public name.
func clientForm(u string) string {
	start, end := 0, len(u)
	for start < end && u[start] <= ' ' {
		start++
	}
	for end > start && u[end-1] <= ' ' {
		end--
	}
	u = u[start:end]
	if strings.ContainsAny(u, "\t\n\r") {
		u = dropTabsAndNewlines.Replace(u)
	}
	if strings.Contains(u, "\\") {
		end := strings.IndexAny(u, "?#")
		if end < 0 {
			end = len(u)
		}
		u = strings.ReplaceAll(u[:end], "\\", "/") + u[end:]
	}
	return u
}

var dropTabsAndNewlines = strings.NewReplacer("\t", "", "\n", "", "\r", "")

// authorityForm reads "http:" or "https:" followed by any number of
// slashes (none, one, three) as a WHATWG parser does: as the start of an
// authority. Only for a blob read's redirect, which would otherwise go as
// it came; anywhere else such a URL is refused.
func authorityForm(u string) string {
	for _, scheme := range []string{"http:", "https:"} {
		if len(u) >= len(scheme) && strings.EqualFold(u[:len(scheme)], scheme) {
			if rest := u[len(scheme):]; !strings.HasPrefix(rest, "//") || strings.HasPrefix(rest, "///") {
				return u[:len(scheme)] + "//" + strings.TrimLeft(rest, "/")
			}
		}
	}
	return u
}

// atNode reports whether authority, of a URL starting with scheme
// ("https://", "//"), is an upstream node's own host and port: Nexus
// itself, whatever the path, as no blob store shares its port. Without a
// port, a scheme-relative URL (the client's scheme) or "null://" (Nexus's
// own making) on a node's host is taken for Nexus: nothing there tells a
// blob store apart.
func (p *publicURLs) atNode(scheme, authority string) bool {
	key := hostOf(authority) + ":"
	port := portOf(authority)
	if port == "" {
		port = defaultPort(strings.TrimSuffix(scheme, "://"))
	}
	for _, n := range p.nodes {
		if (port == "" && strings.HasPrefix(n, key)) || n == key+port {
			return true
		}
	}
	return false
}

// nodeKey is a node's "host:port" (upstream.Node.Host, which always names
// its port) as atNode compares it.
func nodeKey(host string) string { return hostOf(host) + ":" + portOf(host) }

// portOf is an authority's port, "" without one; of "host:5001:5001"
// (see hostOf), the first.
func portOf(authority string) string {
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	if strings.HasPrefix(authority, "[") {
		i := strings.IndexByte(authority, ']')
		if i < 0 {
			return ""
		}
		authority = authority[i+1:]
		if !strings.HasPrefix(authority, ":") {
			return ""
		}
	}
	_, port, ok := strings.Cut(authority, ":")
	if !ok {
		return ""
	}
	port, _, _ = strings.Cut(port, ":")
	// Clients read a port as a number: "08081" is 8081.
	if trimmed := strings.TrimLeft(port, "0"); trimmed != port {
		if trimmed == "" {
			trimmed = "0"
		}
		port = trimmed
	}
	return port
}

// defaultPort is the port a URL of scheme names without one; "" for any
// other scheme.
func defaultPort(scheme string) string {
	switch strings.ToLower(scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// hasScheme reports whether u starts with a URI scheme ("ftp:", "https:"
// without "//"), so is no relative reference.
func hasScheme(u string) bool {
	for i := 0; i < len(u); i++ {
		switch c := u[i]; {
		case c == ':':
			return i > 0
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return false
}

// nexusPath reports a path in Nexus's own namespaces (repositories, REST).
func (p *publicURLs) nexusPath(path string) bool {
	return strings.HasPrefix(path, p.ctxPath+"/repository/") || strings.HasPrefix(path, p.ctxPath+"/service/")
}

// cutScheme strips the schemes Nexus builds URLs with. "null://" is what
// versions that take the scheme from X-Forwarded-Proto write when a proxy
// between nexmux and Nexus dropped it; on our hosts it is repaired like
// "host:5001:5001".
func cutScheme(u string) (string, bool) {
	if len(u) > 8 && strings.EqualFold(u[:8], "https://") {
		return u[8:], true
	}
	if len(u) > 7 && (strings.EqualFold(u[:7], "http://") || strings.EqualFold(u[:7], "null://")) {
		return u[7:], true
	}
	// Scheme-relative: the client keeps its scheme and goes to the host.
	if rest, ok := strings.CutPrefix(u, "//"); ok {
		return rest, true
	}
	return "", false
}

// hostOf returns the lowercase host name of an authority. It is lenient on
// purpose: Nexus builds "host:5001:5001" when a proxy sends X-Forwarded-Host
// with a port, and that must still be recognised (and repaired) as ours.
//
// Clients decode a host's %XX escapes, and read an IP address in any of
// its spellings: the name is the one form of each (an IPv4-mapped IPv6
// address is its IPv4 one; an IPv4 address written as one number, in hex
// or octal parts, as browsers read it, is dotted), so that no spelling of
// a node's address passes for another host's.
func hostOf(authority string) string {
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	if strings.HasPrefix(authority, "[") {
		if i := strings.IndexByte(authority, ']'); i >= 0 {
			if a, err := netip.ParseAddr(unescapeHost(authority[1:i])); err == nil {
				if a = a.Unmap(); a.Is4() {
					return a.String()
				}
				return "[" + a.String() + "]"
			}
			return strings.ToLower(authority[:i+1])
		}
	}
	if i := strings.IndexByte(authority, ':'); i >= 0 {
		authority = authority[:i]
	}
	h := strings.ToLower(strings.TrimSuffix(unescapeHost(authority), "."))
	if a, ok := ipv4Number(h); ok {
		return a
	}
	return h
}

// unescapeHost decodes a host's well-formed %XX escapes, as Go's URL
// parser and browsers do.
func unescapeHost(h string) string {
	if !strings.Contains(h, "%") {
		return h
	}
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		if h[i] == '%' && i+2 < len(h) {
			if v, err := strconv.ParseUint(h[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(h[i])
	}
	return b.String()
}

// ipv4Number reads h as browsers read a host of numbers (the WHATWG URL
// standard's IPv4 parser): up to four dot-separated parts, each decimal,
// hex ("0x") or octal (a leading 0), the last filling the bytes left; it
// returns the dotted address.
func ipv4Number(h string) (string, bool) {
	if h == "" || h[0] < '0' || h[0] > '9' {
		return "", false // a name (most hosts): no part to read
	}
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return "", false
	}
	var addr uint64
	for i, p := range parts {
		base := 10
		switch {
		case len(p) >= 2 && p[0] == '0' && p[1] == 'x':
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		n := uint64(0)
		if p != "" || base != 16 {
			var err error
			if n, err = strconv.ParseUint(p, base, 32); err != nil {
				return "", false
			}
		}
		if i < len(parts)-1 {
			if n > 255 {
				return "", false
			}
			addr |= n << (8 * (3 - i))
			continue
		}
		if n >= 1<<(8*(4-i)) {
			return "", false
		}
		addr |= n
	}
	return netip.AddrFrom4([4]byte{byte(addr >> 24), byte(addr >> 16), byte(addr >> 8), byte(addr)}).String(), true
}

func (p *publicURLs) ours(host string) bool {
	for _, h := range p.hostnames {
		if h == host {
			return true
		}
	}
	return false
}

// mapPath maps a path (with optional query) Nexus produced onto the public
// "/v2/..." form. anyPrefix takes "<any path>/repository/R/..." too: a
// Base URL (Nexus before 3.77) may name a front that maps another path
// onto the context path, and the repository segment still says which.
func (p *publicURLs) mapPath(path string, anyPrefix bool) (string, bool) {
	if registryPath(pathOnly(path)) {
		return path, true
	}
	rest, ok := strings.CutPrefix(path, p.ctxPath+"/repository/")
	if !ok && anyPrefix {
		if i := strings.Index(pathOnly(path), "/repository/"); i >= 0 {
			rest, ok = path[i+len("/repository/"):], true
		}
	}
	if !ok {
		return "", false
	}
	name, sub, _ := strings.Cut(rest, "/")
	sub = "/" + sub
	if !p.target.Owns(name) || !registryPath(pathOnly(sub)) {
		return "", false
	}
	return sub, true
}

func pathOnly(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return s[:i]
	}
	return s
}

// rewriteLink rewrites every <URL> of a Link header value
// (`<url>; rel="next", <url2>; rel="prev"`), leaving out the link-values
// whose URL must not reach the client; false when none is left.
func (p *publicURLs) rewriteLink(v string) (string, bool) {
	var kept []string
	values := splitLinkValues(v)
	for _, lv := range values {
		// A link-value starts with its <URL> (RFC 8288), and no URL holds
		// a '<': a value with a '<' anywhere else (not a link, or one
		// in a quoted parameter) is left out, as a client that takes a
		// URL from the first '<' to the next '>' would read one across it.
		if t := strings.TrimLeft(lv, " \t"); strings.Contains(lv, "<") && (!strings.HasPrefix(t, "<") || strings.Contains(t[1:], "<")) {
			continue
		}
		ok := true
		out := mapLinkURLs(lv, func(u string) string {
			r, keep := p.rewrite(u, false)
			ok = ok && keep
			return r
		})
		if ok {
			kept = append(kept, out)
		}
	}
	return joinLinkValues(kept, len(values))
}

// joinLinkValues joins the link-values kept of n; false when none is left.
func joinLinkValues(kept []string, n int) (string, bool) {
	switch len(kept) {
	case 0:
		return "", false
	case n:
		return strings.Join(kept, ","), true
	}
	// The space after a comma that went with a dropped value.
	out := strings.TrimLeft(strings.Join(kept, ","), " \t")
	return out, strings.Trim(out, " \t,") != ""
}

// rewriteBareLinks holds each link-value of v without a whole <URL>
// (RFC 8288's, which rewriteLink sees to: no '<', or none closed) to what
// rewrite allows of the text before its first ';', '<' and '>' trimmed:
// distribution's registry client reads that as the next page's URL all
// the same, and goes there.
func (p *publicURLs) rewriteBareLinks(v string) (string, bool) {
	if !strings.Contains(v, ":") && !strings.Contains(v, "/") {
		return v, true // nothing that could lead anywhere (rel="next")
	}
	values := splitLinkValues(v)
	kept := make([]string, 0, len(values))
	changed := false
	for _, lv := range values {
		target, _, _ := strings.Cut(lv, ";")
		u := strings.Trim(strings.TrimSpace(target), "<>")
		if i := strings.IndexByte(lv, '<'); (i >= 0 && strings.IndexByte(lv[i:], '>') >= 0) || u == "" {
			kept = append(kept, lv)
			continue
		}
		r, ok := p.rewrite(u, false)
		if !ok {
			changed = true
			continue
		}
		if r != u {
			lv, changed = strings.Replace(lv, u, r, 1), true
		}
		kept = append(kept, lv)
	}
	if !changed {
		return v, true
	}
	return joinLinkValues(kept, len(values))
}

// splitLinkValues cuts a Link header value at the commas between its
// link-values (not those inside a <URL> or a quoted parameter).
func splitLinkValues(v string) []string {
	var out []string
	inURL, inQuote, start := false, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case inURL:
			inURL = c != '>'
		case c == '<':
			inURL = true
		case c == '"':
			inQuote = true
		case c == ',':
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// rewriteChallenge points the realm and service of a Bearer challenge at
// the public token endpoint. Without this a client would call Nexus's
// "<base>/repository/R/v2/token" on the public name, which maps to the
// doubled ".../repository/R/repository/R/v2/token". The realm is always
// the route's own "/v2/token", whatever Nexus wrote: Nexus issues tokens
// only there, a token is a user key every repository takes, and a realm
// anywhere else would get the client's credentials. Service is only
// handed back on the token call; Nexus's names the repository behind the
// name, so a URL there becomes the same endpoint.
func (p *publicURLs) rewriteChallenge(v string) string {
	if !hasBearer(v) {
		return v
	}
	token := p.base + "/v2/token"
	return mapAuthParams(v, func(name, value string) (string, bool) {
		switch {
		case strings.EqualFold(name, "realm"):
			return token, true
		case strings.EqualFold(name, "service") && (strings.HasPrefix(value, "/") || hasScheme(value) || p.ours(hostOf(value))):
			// A URL, or Nexus's own host: a node's address otherwise.
			return token, true
		}
		return "", false
	})
}

// hasBearer reports a Bearer challenge anywhere in a WWW-Authenticate value
// (clients read every challenge of the list). One a comma follows has no
// auth-params to a strict parser, but a lenient one reads those after it.
func hasBearer(v string) bool {
	for i := 0; ; {
		j := indexASCIIFold(v[i:], "bearer")
		if j < 0 {
			return false
		}
		j += i
		end := j + len("bearer")
		if (j == 0 || v[j-1] == ' ' || v[j-1] == ',' || v[j-1] == '\t') && (end == len(v) || v[end] == ' ' || v[end] == '\t' || v[end] == ',') {
			return true
		}
		i = end
	}
}

// mapAuthParams rewrites the auth-params (`name=value`, `name="value"`, with
// optional whitespace around '=') of a WWW-Authenticate value: f returns the
// new value of a parameter, written quoted, or false to keep it as it is.
// Quoted strings are skipped whole, so a parameter's text inside another's
// value is not taken for one. Every occurrence is mapped: clients keep the
// last of a repeated parameter.
func mapAuthParams(v string, f func(name, value string) (string, bool)) string {
	var b strings.Builder
	i, copied := 0, 0
	for i < len(v) {
		c := v[i]
		if c == '"' {
			i = skipQuoted(v, i)
			continue
		}
		if !tokenChar(c) {
			i++
			continue
		}
		start := i
		for i < len(v) && tokenChar(v[i]) {
			i++
		}
		name := v[start:i]
		j := skipSpace(v, i)
		if j >= len(v) || v[j] != '=' || name == "" {
			continue
		}
		j = skipSpace(v, j+1)
		var value string
		end := j
		switch {
		case j < len(v) && v[j] == '"':
			end = skipQuoted(v, j)
			value = strings.TrimSuffix(v[j+1:end], `"`)
		default:
			// A '"' inside a token value still opens a quoted string, as
			// list splitters (Python's parse_http_list) read it: else a
			// realm that follows would be inside quotes to us but not to
			// them, and kept.
			for end < len(v) && v[end] != ',' && v[end] != ' ' && v[end] != '\t' {
				if v[end] == '"' {
					end = skipQuoted(v, end)
					continue
				}
				end++
			}
			value = v[j:end]
		}
		if nv, ok := f(name, value); ok {
			b.WriteString(v[copied:j])
			b.WriteByte('"')
			b.WriteString(nv)
			b.WriteByte('"')
			copied = end
		}
		i = end
	}
	if copied == 0 {
		return v
	}
	b.WriteString(v[copied:])
	return b.String()
}

// skipQuoted returns the index after the quoted string starting at v[i]
// (its closing quote, backslash escapes honoured), or len(v) if unclosed.
func skipQuoted(v string, i int) int {
	for i++; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(v)
}

func skipSpace(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

// tokenChar reports an RFC 9110 tchar.
func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// indexASCIIFold is strings.Index(strings.ToLower(s), needle) for a
// lowercase ASCII needle, but the index is into s itself: ToLower changes
// the byte length of some runes ('Ⱥ' is 2 bytes, 'ⱥ' 3; an invalid byte
// becomes 3-byte U+FFFD), so an index into the lowered copy can point past
// the realm in s, or past its end.
func indexASCIIFold(s, needle string) int {
	if needle == "" {
		return 0
	}
	first, upper := needle[0], needle[0]
	if 'a' <= first && first <= 'z' {
		upper -= 'a' - 'A'
	}
	for i := 0; i+len(needle) <= len(s); i++ {
		if c := s[i]; (c == first || c == upper) && equalASCIIFold(s[i:i+len(needle)], needle) {
			return i
		}
	}
	return -1
}

// rewriteHeaders applies the rewrites to a response's headers in place,
// leaving out the URLs that must not reach the client. blobRedirect: the
// response is a 3xx answer to a blob read.
func (p *publicURLs) rewriteHeaders(h http.Header, blobRedirect bool) {
	if v := h.Values("Location"); len(v) > 0 {
		keepRewritten(h, "Location", v, func(s string) (string, bool) { return p.rewrite(s, blobRedirect) })
	}
	if v := h.Values("Link"); len(v) > 0 {
		lp := *p
		lp.prefix = p.linkPrefix
		keepRewritten(h, "Link", v, func(s string) (string, bool) {
			if s, ok := lp.rewriteLink(s); ok {
				return lp.rewriteBareLinks(s)
			}
			return "", false
		})
	}
	if v := h.Values("Www-Authenticate"); len(v) > 0 {
		for i := range v {
			v[i] = p.rewriteChallenge(v[i])
		}
	}
	// Content-Location and Refresh lead somewhere as Location does.
	if v := h.Values("Content-Location"); len(v) > 0 {
		keepRewritten(h, "Content-Location", v, func(s string) (string, bool) { return p.rewrite(s, false) })
	}
	if v := h.Values("Refresh"); len(v) > 0 {
		keepRewritten(h, "Refresh", v, p.rewriteRefresh)
	}
	if v := h.Values("Set-Cookie"); len(v) > 0 {
		for i := range v {
			v[i] = p.cookieOnPublicName(v[i])
		}
	}
}

// rewriteRefresh maps the URL of a Refresh value ("5; url=URL" in any
// case, "url=" and quotes optional, as browsers read it) as a Location's;
// false when that must not reach the client, or when the value is none a
// browser reads (no delay first): nothing a registry client needs.
func (p *publicURLs) rewriteRefresh(v string) (string, bool) {
	i := skipSpace(v, 0)
	start := i
	for i < len(v) && ('0' <= v[i] && v[i] <= '9' || v[i] == '.') {
		i++
	}
	switch {
	case i == start:
		return "", false
	case i == len(v):
		return v, true // a delay alone: the same page again
	case v[i] != ';' && v[i] != ',' && v[i] != ' ' && v[i] != '\t':
		return "", false
	}
	i = skipSpace(v, i)
	if i < len(v) && (v[i] == ';' || v[i] == ',') {
		i = skipSpace(v, i+1)
	}
	if len(v)-i >= 3 && strings.EqualFold(v[i:i+3], "url") {
		if j := skipSpace(v, i+3); j < len(v) && v[j] == '=' {
			i = skipSpace(v, j+1)
		}
	}
	end := len(v)
	if i < len(v) && (v[i] == '"' || v[i] == '\'') {
		q := v[i]
		i++
		if k := strings.IndexByte(v[i:], q); k >= 0 {
			end = i + k
		}
	}
	if i == end {
		return v, true
	}
	u, ok := p.rewrite(v[i:end], false)
	if !ok {
		return "", false
	}
	return v[:i] + u + v[end:], true
}

// cookieOnPublicName drops a Set-Cookie value's Domain attribute unless it
// names the public host: Nexus (Jetty) would scope it to a node's name or
// another, which the client refuses for the name it asked and which
// names what stays inside. Without one the cookie is the public name's.
func (p *publicURLs) cookieOnPublicName(v string) string {
	if indexASCIIFold(v, "domain") < 0 {
		return v
	}
	public := ""
	if rest, ok := cutScheme(p.base); ok {
		public = hostOf(rest)
	}
	attrs := strings.Split(v, ";")
	kept := attrs[:1]
	for _, a := range attrs[1:] {
		name, value, _ := strings.Cut(a, "=")
		if strings.EqualFold(strings.TrimSpace(name), "domain") {
			d := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(value), "."))
			if public == "" || d != public {
				continue
			}
		}
		kept = append(kept, a)
	}
	return strings.Join(kept, ";")
}

// keepRewritten rewrites the values vs of h's header key in place,
// dropping those f refuses, and the header once none is left.
func keepRewritten(h http.Header, key string, vs []string, f func(string) (string, bool)) {
	out := vs[:0]
	for _, v := range vs {
		if r, ok := f(v); ok {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		delete(h, key)
		return
	}
	h[key] = out
}
