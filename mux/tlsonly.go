package mux

import (
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
	if _, err := c.Write(plainHTTPRefusal); err == nil {
		lingerRefused(c, raw, deadline, plainHTTPLingerBytes)
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
