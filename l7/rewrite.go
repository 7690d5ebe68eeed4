package l7

import (
	"net/http"
	"strings"

	"github.com/nexmux/nexmux/route"
)

// publicURLs rewrites URLs Nexus hands back into the form the client used:
// "<scheme>://<Host as sent>/v2/...". Nexus produces three shapes depending
// on version and route (relative "/v2/...", relative "<ctx>/repository/R/v2/...",
// absolute "http(s)://host[:port]<ctx>/repository/R/v2/..."); all three map
// to the same public URL. URLs on other hosts (an S3 pre-signed redirect) and
// paths outside the route's repositories are left exactly as they are.
type publicURLs struct {
	base      string // "https://team.example.com:8443"; "" keeps results relative
	ctxPath   string
	target    route.Target
	hostnames []string // lowercase host names that mean "this Nexus or us"
}

// rewrite returns the public form of u, or u itself when it is not ours.
func (p *publicURLs) rewrite(u string) string {
	var path string
	switch {
	case strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//"):
		path = u
	default:
		rest, ok := cutScheme(u)
		if !ok {
			return u
		}
		authority := rest
		path = "/"
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			authority, path = rest[:i], rest[i:]
			if path[0] != '/' {
				path = "/" + path
			}
		}
		if !p.ours(hostOf(authority)) {
			return u
		}
	}
	mapped, ok := p.mapPath(path)
	if !ok {
		return u
	}
	return p.base + mapped
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
	return "", false
}

// hostOf returns the lowercase host name of an authority. It is lenient on
// purpose: Nexus builds "host:5001:5001" when a proxy sends X-Forwarded-Host
// with a port, and that must still be recognised (and repaired) as ours.
func hostOf(authority string) string {
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	if strings.HasPrefix(authority, "[") {
		if i := strings.IndexByte(authority, ']'); i >= 0 {
			return strings.ToLower(authority[:i+1])
		}
	}
	if i := strings.IndexByte(authority, ':'); i >= 0 {
		authority = authority[:i]
	}
	return strings.ToLower(strings.TrimSuffix(authority, "."))
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
// "/v2/..." form.
func (p *publicURLs) mapPath(path string) (string, bool) {
	if registryPath(pathOnly(path)) {
		return path, true
	}
	rest, ok := strings.CutPrefix(path, p.ctxPath+"/repository/")
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
// (`<url>; rel="next", <url2>; rel="prev"`).
func (p *publicURLs) rewriteLink(v string) string { return mapLinkURLs(v, p.rewrite) }

// rewriteChallenge rewrites the realm of a Bearer challenge. Without this a
// client would call Nexus's "<base>/repository/R/v2/token" on the public name,
// which maps to the doubled ".../repository/R/repository/R/v2/token".
func (p *publicURLs) rewriteChallenge(v string) string {
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return v
	}
	i := indexASCIIFold(v, `realm="`)
	if i < 0 {
		return v
	}
	start := i + len(`realm="`)
	end := strings.IndexByte(v[start:], '"')
	if end < 0 {
		return v
	}
	return v[:start] + p.rewrite(v[start:start+end]) + v[start+end:]
}

// indexASCIIFold is strings.Index(strings.ToLower(s), needle) for a
// lowercase ASCII needle, but the index is into s itself: ToLower changes
// the byte length of some runes ('Ⱥ' is 2 bytes, 'ⱥ' 3; an invalid byte
// becomes 3-byte U+FFFD), so an index into the lowered copy can point past
// the realm in s, or past its end.
func indexASCIIFold(s, needle string) int {
	for i := 0; i+len(needle) <= len(s); i++ {
		j := 0
		for ; j < len(needle); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				break
			}
		}
		if j == len(needle) {
			return i
		}
	}
	return -1
}

// rewriteHeaders applies the rewrites to a response's headers in place.
func (p *publicURLs) rewriteHeaders(h http.Header) {
	if v := h.Values("Location"); len(v) > 0 {
		for i := range v {
			v[i] = p.rewrite(v[i])
		}
	}
	if v := h.Values("Link"); len(v) > 0 {
		for i := range v {
			v[i] = p.rewriteLink(v[i])
		}
	}
	if v := h.Values("Www-Authenticate"); len(v) > 0 {
		for i := range v {
			v[i] = p.rewriteChallenge(v[i])
		}
	}
}
