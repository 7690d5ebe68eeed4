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
	"sync/atomic"
	"time"

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
	// Writes, when set, is the connection below TLS; the HTTP stage uses
	// it to send large response writes in few socket writes.
	Writes WriteBatcher
	// Reads, when set, is the connection below TLS; the HTTP stage uses it
	// to read an upload's body in few socket reads.
	Reads ReadAheader
	// Sends, when set, is the connection below TLS (or the plain socket of
	// an HTTP/1 port route); the HTTP stage sets --send-timeout's deadline
	// through it, so that the deadline follows the client's progress.
	Sends SendDeadliner
	// Opened is when the connection was routed (--max-conn-age).
	Opened time.Time

	// Counted by the HTTP stage (connpolicy.go): local refusals in a row
	// with nothing forwarded yet, and whether anything was forwarded.
	refusedInARow atomic.Int32
	forwarded     atomic.Bool
	// handled counts the requests that reached the HTTP stage.
	handled atomic.Uint64
	// Revoked is set when a reload removed what the connection depends on
	// (its route, its load balancer's range): it closes after the
	// current request.
	Revoked atomic.Bool

	// text: what every request on the connection repeats, as strings,
	// made on the first request (see texts).
	text atomic.Pointer[connText]
}

type connText struct {
	client string   // Client.String(), an IPv4 client on a dual-stack socket unmapped
	xff    []string // X-Forwarded-For's value; nil without a Client
}

// Requested reports whether a request has reached the HTTP stage on the
// connection.
func (ci *ConnInfo) Requested() bool { return ci.handled.Load() > 0 }

// MarkRequested records a request reaching the HTTP stage.
func (ci *ConnInfo) MarkRequested() {
	ci.handled.Add(1)
}

// Handled is the number of requests that reached the HTTP stage.
func (ci *ConnInfo) Handled() uint64 { return ci.handled.Load() }

// texts returns the connection's strings, made once: an HTTP/2
// connection's first streams may race to make them, and any of the equal
// results will do.
func (ci *ConnInfo) texts() *connText {
	if t := ci.text.Load(); t != nil {
		return t
	}
	t := &connText{client: ci.Client.String()}
	if ci.Client.IsValid() {
		a := ci.Client.Addr().Unmap()
		t.client = netip.AddrPortFrom(a, ci.Client.Port()).String()
		t.xff = []string{a.String()}[:1:1]
	}
	ci.text.Store(t)
	return t
}

// ClientString is Client.String(), made once per connection (the access
// log writes it for every request), with an IPv4 client of a dual-stack
// listener as a.b.c.d:port, not [::ffff:a.b.c.d]:port, as X-Forwarded-For
// and the per-client limits see it.
func (ci *ConnInfo) ClientString() string { return ci.texts().client }

// ReadAheader reads ahead below crypto/tls while an upload's body is being
// copied: crypto/tls asks its connection for ~32 KiB at a time, so between
// BeginReadAhead and EndReadAhead each read fills a pooled buffer with
// whatever the socket holds, for fewer read(2) calls (docs/bench/notes.md).
// Outside that window reads go straight to the socket and no buffer is
// held, so an idle connection keeps none.
// Bytes read ahead past the body (a pipelined request) are kept, in
// order, for the next reads.
//
// Only an HTTP/1.x request may read ahead: its body is read from the
// connection by whoever copies it. HTTP/2 reads frames in its own loop.
type ReadAheader interface {
	BeginReadAhead()
	EndReadAhead()
}

// WriteBatcher gathers what crypto/tls writes between BeginBatch and
// EndBatch into large socket writes: crypto/tls makes one write(2) per
// 16 KiB record, each waking the client and the Go netpoller
// (docs/bench/notes.md). EndBatch writes what is left, so nothing waits
// after the handler's Write returns.
//
// Only an HTTP/1.x handler may batch, and only around its own Write:
// there the write reaches the socket in the handler's goroutine. HTTP/2
// writes frames from its own goroutine, and a batch could hold back a
// frame the handler's Write is itself waiting for.
type WriteBatcher interface {
	BeginBatch()
	EndBatch() error
}

// SendDeadliner takes a write deadline as a span for progress, like
// nginx's send_timeout: a deadline t set at time now is moved on by t-now
// each time the client takes 64 KiB more, so only a write whose client
// takes less than that in t-now fails. A client on a thin link is slow,
// not stalled. It must sit below TLS: crypto/tls fails the connection for good
// once a write of its times out. Set again before any other deadline, it
// keeps its span and progress: a response's writes share them, and time
// between writes does not count. Any other write deadline set on the
// connection afterwards (net/http's, crypto/tls's) is absolute again.
//
// Only an HTTP/1.x handler sets it; HTTP/2 has WriteByteTimeout.
type SendDeadliner interface {
	SetWriteDeadline(t time.Time) error
	// SetSendSpan is SetWriteDeadline(time.Now().Add(d)) without
	// reading the clock.
	SetSendSpan(d time.Duration) error
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
