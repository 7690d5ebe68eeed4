package sni

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/internal/testnet"
)

// A crypto/tls client reads the alert WriteAlert sends in answer to its
// hello and reports it by name, for TLS 1.2 and 1.3 alike.
func TestWriteAlert(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alert Alert
		want  string
	}{
		{"unrecognized_name", AlertUnrecognizedName, "remote error: tls: unrecognized name"},
		{"decode_error", AlertDecodeError, "remote error: tls: error decoding message"},
		{"protocol_version", AlertProtocolVersion, "remote error: tls: protocol version not supported"},
		{"internal_error", AlertInternalError, "remote error: tls: internal error"},
	} {
		for _, max := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tc.name+"/"+tls.VersionName(max), func(t *testing.T) {
				c, s := testnet.Pair(t)
				done := make(chan error, 1)
				go func() {
					if _, err := ReadClientHello(s); err != nil {
						done <- err
						return
					}
					done <- WriteAlert(s, tc.alert)
					s.Close()
				}()
				err := tls.Client(c, &tls.Config{ServerName: "team-a.example.com", MaxVersion: max}).Handshake()
				if werr := <-done; werr != nil {
					t.Fatalf("server: %v", werr)
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("client handshake: %v, want %q", err, tc.want)
				}
			})
		}
	}
}
