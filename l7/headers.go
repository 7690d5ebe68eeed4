package l7

import (
	"net/http"
	"strings"
)

// identityHeader reports a header that names a user or rewrites the URL for
// whatever trusts it: Nexus's Remote User Token realm, Jetty/Spring
// URL-override filters, CDN client-address headers. Only nexmux decides
// what Nexus hears about the client (X-Forwarded-For/Proto), so clients
// never get to send these. A switch: no hashing per header.
func identityHeader(k string) bool {
	switch k {
	case "Forwarded",
		"X-Real-Ip",
		"X-Proxied-Https",
		"Proxy-Ssl-Id",
		"Proxy-Auth-Cert",
		"X-Remote-User",
		"Remote-User",
		"X-Remote-Addr",
		"X-Authenticated-User",
		"X-Auth-User",
		"X-User",
		"X-Username",
		"X-Webauth-User",
		"X-Forwarded-User",
		"X-Original-Url",
		"X-Original-Uri",
		"X-Rewrite-Url",
		"X-Override-Url",
		"X-Http-Method-Override",
		"X-Http-Method",
		"X-Method-Override",
		"True-Client-Ip",
		"X-Client-Ip",
		"X-Cluster-Client-Ip",
		"X-Proxyuser-Ip",
		"X-Originating-Ip",
		"Cf-Connecting-Ip",
		"Fastly-Client-Ip",
		"X-Host":
		return true
	}
	return false
}

// scrubHeaders removes what a client may not say to Nexus: forwarding and
// identity headers, headers with "_" in their name (a backend that maps
// "_" and "-" alike would read X_Remote_User as X-Remote-User; nginx drops
// them by default), and the operator's --strip-header names.
func (p *Proxy) scrubHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "X-Forwarded-") || identityHeader(k) || strings.ContainsRune(k, '_') || p.strip[k] {
			delete(h, k)
		}
	}
}

// stripSet canonicalises the --strip-header names.
func stripSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
	}
	return m
}
