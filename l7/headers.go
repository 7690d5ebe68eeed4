package l7

import (
	"net/http"
	"strings"
)

// identityHeaders name a user or rewrite the URL for whatever trusts them:
// Nexus's Remote User Token realm, Jetty/Spring URL-override filters, CDN
// client-address headers. Only nexmux decides what Nexus hears about the
// client (X-Forwarded-For/Proto), so clients never get to send these.
var identityHeaders = map[string]bool{
	"Forwarded":              true,
	"X-Real-Ip":              true,
	"X-Proxied-Https":        true,
	"Proxy-Ssl-Id":           true,
	"Proxy-Auth-Cert":        true,
	"X-Remote-User":          true,
	"Remote-User":            true,
	"X-Remote-Addr":          true,
	"X-Authenticated-User":   true,
	"X-Auth-User":            true,
	"X-User":                 true,
	"X-Username":             true,
	"X-Webauth-User":         true,
	"X-Forwarded-User":       true,
	"X-Original-Url":         true,
	"X-Original-Uri":         true,
	"X-Rewrite-Url":          true,
	"X-Override-Url":         true,
	"X-Http-Method-Override": true,
	"X-Http-Method":          true,
	"X-Method-Override":      true,
	"True-Client-Ip":         true,
	"X-Client-Ip":            true,
	"X-Cluster-Client-Ip":    true,
	"X-Proxyuser-Ip":         true,
	"X-Originating-Ip":       true,
	"Cf-Connecting-Ip":       true,
	"Fastly-Client-Ip":       true,
	"X-Host":                 true,
}

// scrubHeaders removes what a client may not say to Nexus: forwarding and
// identity headers, headers with "_" in their name (a backend that maps
// "_" and "-" alike would read X_Remote_User as X-Remote-User; nginx drops
// them by default), and the operator's --strip-header names.
func (p *Proxy) scrubHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "X-Forwarded-") || identityHeaders[k] || strings.ContainsRune(k, '_') || p.strip[k] {
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
