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
		"X-Auth-Username",
		"X-Auth-Email",
		"X-Auth-Userid",
		"X-Auth-Subject",
		"Remote-Email",
		"Remote-Groups",
		"Remote-Name",
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
		"X-Host",
		"X-Original-Host":
		return true
	}
	return identityPrefix(k)
}

// identityPrefixes are the header families the usual authenticating fronts
// set for the backend behind them (oauth2-proxy, authentik, Pomerium,
// Google IAP, AWS ALB, Azure App Service, Cloudflare Access, Tailscale):
// a site with such a front beside nexmux points its Remote User Token
// realm at one of them, so a client must not be able to send it.
var identityPrefixes = [...]string{
	"X-Auth-Request-",
	"X-Authentik-",
	"X-Pomerium-",
	"X-Goog-Authenticated-",
	"X-Goog-Iap-",
	"X-Amzn-Oidc-",
	"X-Ms-Client-Principal",
	"Cf-Access-",
	"Tailscale-User-",
}

func identityPrefix(k string) bool {
	// Every family starts with X, C or T: the usual request headers
	// (Accept, Authorization, User-Agent...) skip the nine comparisons.
	if k == "" || k[0] != 'X' && k[0] != 'C' && k[0] != 'T' {
		return false
	}
	for _, p := range identityPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// scrubHeaders removes what a client may not say to Nexus: forwarding and
// identity headers, headers with "_" in their name (a backend that maps
// "_" and "-" alike would read X_Remote_User as X-Remote-User; nginx drops
// them by default), the operator's --strip-header names, and headers that
// would have a write sent twice (resendHeader).
func (p *Proxy) scrubHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, "X-Forwarded-") || identityHeader(k) || strings.ContainsRune(k, '_') || p.strip[k] || resendHeader(k) {
			delete(h, k)
		}
	}
}

// resendHeader reports a header that has net/http's Transport send the
// request again, a write too, when its reused connection to Nexus breaks:
// when a request is sent again is nexmux's rule (failover), not the
// client's, and Nexus reads neither.
func resendHeader(k string) bool { return k == "Idempotency-Key" || k == "X-Idempotency-Key" }

// stripSet canonicalises the --strip-header names.
func stripSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[http.CanonicalHeaderKey(strings.TrimSpace(n))] = true
	}
	return m
}

// exhaustAgent reports a User-Agent that Nexus's ExhaustRequestFilter
// matches with its default nexus.view.exhaustForAgents
// ("Apache-Maven.*|Apache Ivy.*"): it then reads the whole body of a PUT
// or POST it refused, 401 included, before the answer goes out, so an
// anonymous client trickling a body would hold a Jetty thread (and an
// --upstream-max-conns place) as long as it likes. No registry client is
// Maven or Ivy. Every value is looked at, though Jetty reads the first.
func exhaustAgent(h http.Header) bool {
	for _, ua := range h.Values("User-Agent") {
		if strings.HasPrefix(ua, "Apache-Maven") || strings.HasPrefix(ua, "Apache Ivy") {
			return true
		}
	}
	return false
}
