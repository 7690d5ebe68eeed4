package mux

import (
	"net"
	"net/http"
)

// plainHTTPRefusal is what a plain-HTTP client of a TLS-only port route
// reads: a Registry-API error docker prints, then the connection closes.
var plainHTTPRefusal = registryErrorResponse(http.StatusBadRequest, "nexmux: this port serves HTTPS only")

func refusePlainHTTP(c net.Conn) { _, _ = c.Write(plainHTTPRefusal) }

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
