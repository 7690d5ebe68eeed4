package mux

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"time"
)

// plainHTTPRefusal is what a plain-HTTP client of a TLS-only port route
// reads: a Registry-API error docker prints, then the connection closes.
var plainHTTPRefusal = registryErrorResponse(http.StatusBadRequest, "nexmux: this port serves HTTPS only")

// refusePlainHTTP answers with plainHTTPRefusal, then reads on (as after a
// TLS alert) while the client may still be sending its request's body.
func refusePlainHTTP(c, raw net.Conn, deadline time.Time) {
	defer countRefusing(raw)()
	if _, err := c.Write(plainHTTPRefusal); err == nil {
		lingerOn(c, raw, deadline, plainHTTPLingerBytes)
	}
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113, 3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// isH2CPreface reports whether the connection rr reads opens with the
// HTTP/2 preface, reading on (under the routing deadline) while what came
// may begin it: a request of any method but PRI differs by its second
// byte. net/http would hand the preface to the handler as a "PRI *"
// request and answer in HTTP/1, which an HTTP/2 client cannot read.
func isH2CPreface(rr *routingReader) bool {
	rr.fill(func(b []byte) bool { return len(b) < len(h2Preface) && bytes.HasPrefix(h2Preface, b) })
	return bytes.HasPrefix(rr.buf, h2Preface)
}

// An HTTP/2 client with prior knowledge (h2c) reads the server preface (an
// empty SETTINGS, RFC 9113 3.4: clients take no other frame first), then a
// GOAWAY naming no stream, which clients report by its code's name (curl,
// Go). On a plain-HTTP port route, where nexmux serves HTTP/2 over TLS
// only, the code is HTTP_1_1_REQUIRED (0xd): HTTP/1.1 is what the port
// serves. Where only HTTPS is served (the TLS listener, --port-tls-only)
// it is INADEQUATE_SECURITY (0xc): plain HTTP/1.1 is refused there too.
var (
	h2Settings       = []byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0} // length 0, SETTINGS, stream 0
	h2cGoAway        = h2GoAway(0xd, "nexmux: HTTP/2 needs TLS here; use HTTP/1.1 or https on this port")
	h2cTLSOnlyGoAway = h2GoAway(0xc, "nexmux: this port serves HTTPS only")
)

// h2GoAway is a GOAWAY frame on stream 0, last stream 0, with code and
// debug.
func h2GoAway(code byte, debug string) []byte {
	n := 8 + len(debug)
	b := []byte{byte(n >> 16), byte(n >> 8), byte(n), 0x7, 0, 0, 0, 0, 0} // GOAWAY, stream 0
	b = append(b, 0, 0, 0, 0, 0, 0, 0, code)                              // last stream 0, the error code
	return append(b, debug...)
}

// refuseH2C refuses an h2c client whose preface rr read (isH2CPreface),
// with the bytes rr read behind it: SETTINGS at once, goAway once the client has
// sent its first request's HEADERS (a GOAWAY before its stream is open
// leaves Go's client reporting only a connection "that could not be
// established"), then it reads on as after the plain-HTTP 400; waiting
// and reading share lingerRefused's bounds.
func refuseH2C(c, raw net.Conn, rr *routingReader, deadline time.Time, goAway []byte) {
	sent := rr.buf[len(h2Preface):]
	defer countRefusing(raw)()
	if _, err := c.Write(h2Settings); err != nil {
		return
	}
	deadline = lingerEnd(deadline)
	_ = c.SetReadDeadline(deadline)
	awaitH2Headers(io.LimitReader(io.MultiReader(bytes.NewReader(sent), c), alertLingerBytes))
	if _, err := c.Write(goAway); err == nil {
		lingerOn(c, raw, deadline, plainHTTPLingerBytes)
	}
}

// awaitH2Headers reads HTTP/2 frames from r up to the first HEADERS frame's
// header, or until r fails.
func awaitH2Headers(r io.Reader) {
	var h [9]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil || h[3] == 0x1 {
			return
		}
		if _, err := io.CopyN(io.Discard, r, int64(h[0])<<16|int64(h[1])<<8|int64(h[2])); err != nil {
			return
		}
	}
}

// httpMethods are the request-line starts looksLikeHTTP knows.
var httpMethods = []string{"GET ", "HEAD ", "POST ", "PUT ", "PATCH ", "DELETE ", "OPTIONS ", "CONNECT ", "TRACE ", "PRI "}

// looksLikeHTTP reports whether the bytes read so far begin an HTTP/1.x
// request line; anything else (SSH, garbage) is only closed.
func looksLikeHTTP(b []byte) bool {
	for _, m := range httpMethods {
		if len(b) >= len(m) && string(b[:len(m)]) == m {
			return true
		}
	}
	return false
}

// undecided reports whether b, the first bytes of a connection that is not
// a TLS handshake, is too short to tell an SSLv2 hello (3 bytes) or, when
// plainHTTP is asked, an HTTP request line from anything else.
func undecided(b []byte, plainHTTP bool) bool {
	if b[0]&0x80 != 0 {
		return len(b) < 3
	}
	if plainHTTP {
		for _, m := range httpMethods {
			if len(b) < len(m) && m[:len(b)] == string(b) {
				return true
			}
		}
	}
	return false
}
