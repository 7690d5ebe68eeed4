package mux

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nexmux/nexmux/internal/lograte"
	"github.com/nexmux/nexmux/l7"
)

// net/http answers a request it cannot parse (a bad request line or header,
// a missing Host, headers over --max-header-bytes, HTTP/9.9, an unknown
// Transfer-Encoding, an Expect other than 100-continue) itself, in plain
// text or with no body, before any handler runs.
// Registry clients print a Registry-API JSON error and little else, so the
// HTTP/1 server is given its connection through h1Conn or h1TLSConn, which
// recognise those answers by their exact shape and send the same status as
// JSON. HTTP/2 connections stay *tls.Conn (net/http's HTTP/2 server needs
// it): its own answers (stream errors, and a few plain-text or HTML bodies:
// 431, 417, a Connection or TE header) are beyond reach here.

// netHTTPErrorHeaders is what net/http writes between the status line and
// the body of those answers (conn.serve in net/http/server.go).
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// net/http's answer to an Expect other than 100-continue
// (response.sendExpectationFailed) has no body to match, and its Date
// stands between these two: it is recognised by its whole length. Its
// status line is the request's version: HTTP/1.0 for an HTTP/1.0 request.
const (
	netHTTP417Head = " 417 Expectation Failed\r\nConnection: close\r\nDate: "
	netHTTP417Tail = "\r\nContent-Length: 0\r\n\r\n"
)

// maxNetHTTPErrorLine bounds those answers' status line ("400 Bad Request:
// missing required Host header" is the longest).
const maxNetHTTPErrorLine = 96

// h1Conn carries an HTTP/1 connection to net/http: a plain-HTTP port
// route's routed connection, or (in h1TLSConn) a terminated *tls.Conn.
type h1Conn struct {
	net.Conn
	log  connLog
	rel  idleRelease
	bg   bgRead
	live *liveConn // its entry in Server.live, set before net/http has it
	// responding: a handler's response is under way, from the handler's
	// start until net/http calls the connection idle (after its last
	// flush). Its bytes are the response's, never net/http's own answer,
	// however they look: a blob a client pushed may be shaped like one.
	responding atomic.Bool
	// fr follows the request stream for ambiguous framing (h1framing.go).
	fr framing
	// alert is the TLS alert a read ended with (the client's, or one
	// crypto/tls sent on a record it could not read): net/http answers
	// that with its 400 as if the request were malformed.
	alert atomic.Pointer[net.OpError]
}

// Read is every read net/http makes of the request stream.
func (c *h1Conn) Read(b []byte) (int, error) {
	n, err := c.readStream(b)
	if n > 0 {
		c.fr.scan(b[:n])
	}
	if err != nil {
		if oe := alertOf(err); oe != nil {
			c.alert.Store(oe)
		}
	}
	return n, err
}

// alertOf is the TLS alert err reports (crypto/tls's *net.OpError of Op
// "remote error" or "local error"), or nil. Every keep-alive request ends
// a read with an error (net/http's background read is stopped through a
// past deadline), so crypto/tls's own *net.OpError is looked at directly:
// errors.As goes through reflection.
func alertOf(err error) *net.OpError {
	oe, ok := err.(*net.OpError)
	if !ok {
		if oe = asOpError(err); oe == nil {
			return nil
		}
	}
	if oe.Op == "remote error" || oe.Op == "local error" {
		return oe
	}
	return nil
}

// asOpError is the *net.OpError in err's chain, or nil: apart, so that
// the variable errors.As fills is allocated only when it runs (inlined,
// it would be allocated on every call of alertOf).
//
//go:noinline
func asOpError(err error) *net.OpError {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	return nil
}

func (c *h1Conn) Write(b []byte) (int, error) {
	if c.responding.Load() {
		return c.Conn.Write(b)
	}
	if oe := c.alert.Load(); oe != nil {
		if _, _, ok := parseNetHTTPError(b); ok {
			c.endedByAlert(oe)
			return len(b), nil
		}
	}
	return writeH1(c.Conn, b, &c.log)
}

// endedByAlert logs a connection whose stream a TLS alert ended, instead
// of net/http's 400, which nobody would read after a fatal alert. Before
// any request it ends the client's handshake as the client sees it (Go's
// ech_required comes right behind its Finished).
func (c *h1Conn) endedByAlert(oe *net.OpError) {
	if !c.log.info.Requested() {
		c.log.refuse(ReasonHandshake, "TLS handshake failed", "err", oe)
		return
	}
	c.log.logger().Debug("connection ended by a TLS alert", "err", oe)
}

// h1ConnKey is the context key of a request's *h1Conn (connContext).
type h1ConnKey struct{}

// markResponding wraps the HTTP stage: an HTTP/1 connection learns that a
// response is under way before the handler writes a byte of it, an HTTP/2
// one that a stream was answered (h2idle.go).
func markResponding(h http.Handler) http.Handler {
	if h == nil {
		h = http.DefaultServeMux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(h1ConnKey{}).(*h1Conn); ok {
			c.responding.Store(true)
			if c.fr.ambiguous.Load() {
				// This request, or one read ahead of it, was framed
				// ambiguously: none after it is served (h1framing.go).
				w.Header().Set("Connection", "close")
			}
		} else if lc, ok := r.Context().Value(h2ConnKey{}).(*liveConn); ok {
			lc.serveH2(h, w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// NetConn returns the connection below (connContext unwraps with it).
func (c *h1Conn) NetConn() net.Conn { return c.Conn }

// h1TLSConn carries a terminated TLS connection that negotiated HTTP/1.x.
// ConnectionState gives requests their Request.TLS; net/http sends its
// close_notify with CloseWrite.
type h1TLSConn struct {
	h1Conn
	tc *tls.Conn
}

func newH1TLSConn(tc *tls.Conn, log connLog) *h1TLSConn {
	return &h1TLSConn{h1Conn: h1Conn{Conn: tc, log: log}, tc: tc}
}

func (c *h1TLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }
func (c *h1TLSConn) CloseWrite() error                    { return c.tc.CloseWrite() }

func writeH1(c net.Conn, b []byte, log *connLog) (int, error) {
	status, detail, ok := parseNetHTTPError(b)
	if !ok {
		return c.Write(b)
	}
	// Counted like a refused connection: past the line limit, nothing else
	// would record it.
	log.s.countRefused(ReasonMalformedRequest)
	if ok, dropped := log.s.unparsable.Note(); ok {
		args := []any{"reason", ReasonMalformedRequest, "status", status}
		if detail != "" {
			args = append(args, "detail", detail)
		}
		log.logger().Info("request refused: net/http could not parse it", lograte.Unlogged(args, dropped)...)
	}
	if _, err := c.Write(registryErrorResponse(status, netHTTPErrorMessage(status, detail))); err != nil {
		return 0, err
	}
	return len(b), nil
}

// parseNetHTTPError reports whether b is exactly one of net/http's own
// answers, and its status and detail ("invalid header name"). Anything
// else, a handler's response included (net/http sorts its header lines, so
// Connection would come before Content-Type, and adds Date), is not.
func parseNetHTTPError(b []byte) (status int, detail string, ok bool) {
	const pre = "HTTP/1.1 "
	if (bytes.HasPrefix(b, []byte("HTTP/1.1")) || bytes.HasPrefix(b, []byte("HTTP/1.0"))) &&
		len(b) == len("HTTP/1.x")+len(netHTTP417Head)+len(http.TimeFormat)+len(netHTTP417Tail) &&
		bytes.HasPrefix(b[len("HTTP/1.x"):], []byte(netHTTP417Head)) && bytes.HasSuffix(b, []byte(netHTTP417Tail)) {
		return http.StatusExpectationFailed, "", true
	}
	if !bytes.HasPrefix(b, []byte(pre)) {
		return 0, "", false
	}
	// The status line is short; a large body write is not scanned.
	head := b[:min(len(b), len(pre)+maxNetHTTPErrorLine+len(netHTTPErrorHeaders))]
	i := bytes.Index(head, []byte(netHTTPErrorHeaders))
	if i < 0 {
		return 0, "", false
	}
	line, body := string(b[len(pre):i]), string(b[i+len(netHTTPErrorHeaders):])
	if body != line && (line != "501 Not Implemented" || body != "Unsupported transfer encoding") {
		return 0, "", false
	}
	if len(line) < 4 || line[3] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(line[:3])
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	if _, d, found := strings.Cut(line, ": "); found {
		detail = d
	}
	return status, detail, true
}

// netHTTPErrorMessage is what a client is told for one of net/http's own
// answers.
func netHTTPErrorMessage(status int, detail string) string {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return "nexmux: the request headers are too large"
	case http.StatusNotImplemented:
		return "nexmux: unsupported Transfer-Encoding"
	case http.StatusHTTPVersionNotSupported:
		return "nexmux: unsupported HTTP version"
	case http.StatusExpectationFailed:
		return "nexmux: unsupported Expect (only 100-continue is served)"
	}
	if detail != "" {
		return "nexmux: malformed HTTP request: " + detail
	}
	return "nexmux: malformed HTTP request"
}

// registryErrorResponse is a whole HTTP/1.1 answer that mux writes itself,
// before or instead of net/http: a Registry-API error with code
// UNSUPPORTED, then the connection closes.
func registryErrorResponse(status int, msg string) []byte {
	body := l7.ErrorBody("UNSUPPORTED", msg)
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: application/json\r\n")
	b.WriteString("Docker-Distribution-Api-Version: registry/2.0\r\n")
	b.WriteString("Connection: close\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}
