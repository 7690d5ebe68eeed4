package sni

import (
	"net"
	"time"
)

// TLS record layer (RFC 8446, Section 5.1).
const (
	// RecordTypeHandshake is the first byte of every TLS connection: a
	// listener that sees anything else is not talking to a TLS client.
	RecordTypeHandshake = 22
	recordTypeAlert     = 21
	recordHeaderLen     = 5
	// maxRecordPayload is the TLSPlaintext limit.
	maxRecordPayload = 1 << 14
)

// Alert is a TLS alert description (RFC 8446, Section 6.2).
type Alert byte

// The alerts a listener sends when it refuses a ClientHello.
const (
	// AlertDecodeError: the hello could not be parsed.
	AlertDecodeError Alert = 50
	// AlertUnrecognizedName: no route (and no fallback) for the server
	// name the client asked for.
	AlertUnrecognizedName Alert = 112
	// AlertProtocolVersion: an SSLv2-format hello, answered as crypto/tls
	// answers it.
	AlertProtocolVersion Alert = 70
	// AlertInternalError: the route is known but cannot be served (a
	// passthrough backend that cannot be reached).
	AlertInternalError Alert = 80
)

// IsSSLv2Hello reports whether b, a connection's first bytes, start an
// SSLv2-format ClientHello: a two-byte length with its top bit set (no TLS
// record type and no HTTP method starts so), then message type 1.
func IsSSLv2Hello(b []byte) bool { return len(b) >= 3 && b[0]&0x80 != 0 && b[2] == 1 }

const alertLevelFatal = 2

// alertWriteTimeout bounds writing an alert: the connection is being
// refused, and a client that does not read must not hold it open.
const alertWriteTimeout = time.Second

// WriteAlert sends one fatal alert record on c, so that the client prints
// a clear reason ("tls: unrecognized name") instead of a bare connection
// reset. The record version is 3,3, as in every TLS 1.2 and 1.3 record.
// The caller closes c afterwards.
func WriteAlert(c net.Conn, a Alert) error {
	_ = c.SetWriteDeadline(time.Now().Add(alertWriteTimeout))
	_, err := c.Write([]byte{recordTypeAlert, 3, 3, 0, 2, alertLevelFatal, byte(a)})
	return err
}
