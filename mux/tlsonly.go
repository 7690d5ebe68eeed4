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
