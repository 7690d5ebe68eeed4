package daemon_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// dialH2 opens a TLS connection to st naming sni, checks that h2 was
// negotiated and writes the client preface; the caller sends its
// SETTINGS. The connection closes when t ends.
func dialH2(t *testing.T, st *stack.Stack, sni string) (*tls.Conn, *http2.Framer) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
		&tls.Config{ServerName: sni, RootCAs: st.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	return c, http2.NewFramer(c, c)
}

// headerBlock is fields HPACK-encoded, in order, as given (pseudo-headers
// and all, however malformed).
func headerBlock(fields [][2]string) []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range fields {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return hb.Bytes()
}

// readH2Frames reads fr's frames until it fails: SETTINGS are acked under
// wmu (the framer's write lock), and every other frame is passed to on
// under mu with the connection's HPACK decoder.
func readH2Frames(fr *http2.Framer, wmu, mu *sync.Mutex, on func(f http2.Frame, dec *hpack.Decoder)) {
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if sf, ok := f.(*http2.SettingsFrame); ok {
			if !sf.IsAck() {
				wmu.Lock()
				_ = fr.WriteSettingsAck()
				wmu.Unlock()
			}
			continue
		}
		mu.Lock()
		on(f, dec)
		mu.Unlock()
	}
}
