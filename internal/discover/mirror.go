package discover

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// mirrors proposes one --mirror per docker proxy repository, keyed by the
// registry its remote URL names, on the name mirror.<domain> (none without
// a domain, a note instead). A second proxy of the same registry is left
// out with a note: one name serves a registry once.
func (p *Plan) mirrors(docker []Repo, domain string) {
	p.MirrorHost = "mirror.example.com"
	if domain != "" {
		p.MirrorHost = "mirror." + domain
	}
	taken := map[string]string{}
	for _, r := range docker {
		if r.Type != "proxy" || r.Proxy == nil || r.Proxy.RemoteURL == "" {
			continue
		}
		u, err := url.Parse(r.Proxy.RemoteURL)
		reg, ok := "", false
		if err == nil {
			reg, ok = route.CanonicalRegistry(u.Host)
		}
		if !ok {
			p.MirrorNotes = append(p.MirrorNotes, fmt.Sprintf("%s: remote %q names no registry host", r.Name, redacted(r.Proxy.RemoteURL)))
			continue
		}
		// A path (another Nexus's /repository/R/, an Artifactory's API
		// path) is no registry root: nobody pulls "<host>/<image>" there.
		if path := strings.TrimSuffix(strings.TrimSuffix(u.EscapedPath(), "/"), "/v2"); path != "" {
			p.MirrorNotes = append(p.MirrorNotes, fmt.Sprintf("%s: remote %s has a path, so is no registry's root: no --mirror line", r.Name, safeText(redacted(r.Proxy.RemoteURL))))
			continue
		}
		if prev, dup := taken[reg]; dup {
			p.MirrorNotes = append(p.MirrorNotes, fmt.Sprintf("%s: %s is already mirrored by %s", r.Name, reg, prev))
			continue
		}
		taken[reg] = r.Name
		p.Mirrors = append(p.Mirrors, reg+"="+r.Name)
		note := fmt.Sprintf("%s: proxy of %s (%s)", r.Name, reg, safeText(redacted(r.Proxy.RemoteURL)))
		p.MirrorNotes = append(p.MirrorNotes, note)
		p.proxies = append(p.proxies, note)
	}
	// mirror.example.com is nobody's name: serve refuses a mirror name no
	// certificate covers, so printed it would make the whole output unusable.
	if domain == "" && len(p.Mirrors) > 0 {
		p.MirrorNotes = append(p.MirrorNotes, "no --mirror lines without --domain: the mirror name is mirror.DOMAIN, which needs a certificate of yours; run again with --domain")
		p.Mirrors = nil
	}
}

// redacted hides the credentials written into a remote URL, user name
// too (a token is often written there alone): discover's output goes into
// files, tickets and CI logs.
func redacted(remote string) string {
	if u, err := url.Parse(remote); err == nil && (u.User != nil || !strings.Contains(remote, "@")) {
		if u.User != nil {
			u.User = url.User("xxxxx")
		}
		if u.RawQuery != "" {
			u.RawQuery = "xxxxx" // a token is sometimes given there
		}
		return u.String()
	}
	// Unparsed, or parsed with the credentials where url.URL does not see
	// them: "robot:pw@quay.io" has the scheme "robot", "https:robot:pw@h"
	// an opaque part.
	return upstream.HideUserinfo(remote)
}
