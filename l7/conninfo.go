// Package l7 is nexmux's HTTP stage: it maps a team's public Registry API
// (https://team.example.com/v2/...) onto the team's Nexus repository path
// (http://nexus:8081[/ctx]/repository/<repo>/v2/...) with
// httputil.ReverseProxy, and rewrites the URLs Nexus hands back (upload
// Location, paging Link, token realm) to the public name the client used.
//
// The listener (package mux) decides the route per connection; this package
// confines every request on that connection to the route's repositories.
package l7

import (
	"context"
	"net/netip"

	"github.com/nexmux/nexmux/route"
)

// ConnInfo is what the listener learned about a connection before HTTP: the
// route it chose and why. mux attaches it to every request's context.
type ConnInfo struct {
	Route *route.Route
	// Table is the snapshot the connection was routed with; the Host header
	// check uses the same snapshot so a reload never splits one decision.
	Table *route.Table
	// ServerName is the TLS SNI ("" when the client sent none or spoke
	// plain HTTP).
	ServerName string
	// ByPort is set when a port route chose the route: legacy clients send
	// "Host: nexus.example.com:8082", which says nothing about the team.
	ByPort bool
	// TLS is set when nexmux terminated TLS; it decides the scheme of the
	// URLs handed back to the client.
	TLS bool
	// Client is the real client address (from the PROXY header when a
	// trusted load balancer sent one).
	Client netip.AddrPort
}

type ctxKey struct{}

// NewContext returns ctx carrying ci.
func NewContext(ctx context.Context, ci *ConnInfo) context.Context {
	return context.WithValue(ctx, ctxKey{}, ci)
}

// FromContext returns the ConnInfo stored by NewContext, or nil.
func FromContext(ctx context.Context) *ConnInfo {
	ci, _ := ctx.Value(ctxKey{}).(*ConnInfo)
	return ci
}
