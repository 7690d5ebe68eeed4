package mux

import (
	"io"
	"net"
)

// plainHTTPRefusal is what a plain-HTTP client of a TLS-only port route
// reads: a Registry-API error docker prints, then the connection closes.
const plainHTTPRefusal = "HTTP/1.1 400 Bad Request\r\n" +
	"Content-Type: application/json\r\n" +
	"Docker-Distribution-Api-Version: registry/2.0\r\n" +
	"Connection: close\r\n" +
	"Content-Length: 97\r\n\r\n" +
	`{"errors":[{"code":"UNSUPPORTED","message":"nexmux: this port serves HTTPS only","detail":null}]}`

func refusePlainHTTP(c net.Conn) { _, _ = io.WriteString(c, plainHTTPRefusal) }

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
