package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"
)

// helloConn hands crypto/tls one first flight and swallows its answer.
type helloConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *helloConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *helloConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *helloConn) Close() error                     { return nil }
func (c *helloConn) SetDeadline(time.Time) error      { return nil }
func (c *helloConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloConn) SetWriteDeadline(time.Time) error { return nil }
func (c *helloConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *helloConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

var errSeen = errors.New("seen")

// cryptoTLSName is the server name crypto/tls's server reads from raw, and
// whether it accepted the hello at all.
func cryptoTLSName(raw []byte) (string, bool) {
	var name string
	seen := false
	cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		name, seen = chi.ServerName, true
		return nil, errSeen
	}}
	_ = tls.Server(&helloConn{r: bytes.NewReader(raw)}, cfg).Handshake()
	return name, seen
}

func FuzzServerNameAgreesWithCryptoTLS(f *testing.F) {
	for _, raw := range seedHellos(f) {
		f.Add(handshakeMessage(f, raw)[4:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body)+4 > maxRecordPayload {
			return
		}
		msg := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
		raw := append([]byte{22, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
		name, _, err := parseClientHello(body)
		theirs, ok := cryptoTLSName(raw)
		if err != nil || !ok {
			return
		}
		// ASCII letters only, as routing folds them: strings.ToLower (and
		// strings.Map) turn a byte that is no UTF-8 into U+FFFD.
		folded := []byte(theirs)
		for i, c := range folded {
			if 'A' <= c && c <= 'Z' {
				folded[i] = c + 'a' - 'A'
			}
		}
		if string(folded) != name {
			t.Fatalf("routed as %q, crypto/tls reads %q", name, theirs)
		}
	})
}
