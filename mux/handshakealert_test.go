package mux_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/mux"
)

// refusalLine waits for the one log line refusing client with reason and
// returns it.
func (m *muxServer) refusalLine(t *testing.T, client, reason string) string {
	t.Helper()
	m.waitRefusal(t, client, reason)
	for _, l := range strings.Split(m.logs.String(), "\n") {
		if strings.Contains(l, "client="+client+" ") {
			return l
		}
	}
	t.Fatalf("no log line for %s", client)
	return ""
}

func writeOrFail(t *testing.T, c net.Conn, p []byte) {
	t.Helper()
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
}

// A TLS 1.3 client that rejects the certificate (OpenSSL, so curl, Python,
// git: unknown CA, a name mismatch) sends its alert unencrypted, having no
// keys of its own yet. crypto/tls then fails to decrypt it and reports
// "bad record MAC", which reads as a corrupt network: the line must say
// what the client said.
func TestPlaintextAlertInTLS13HandshakeLoggedAsTheClientsReason(t *testing.T) {
	m := startMuxWith(t, muxConfig{})
	hello := testnet.ClientHello(t, m.tlsConfig("team-a.nexmux.test"))
	unknownCA := []byte{21, 3, 3, 0, 2, 2, 48} // fatal unknown_ca, as openssl sends it
	for _, tc := range []struct {
		name string
		send func(t *testing.T, c net.Conn)
	}{
		{"after the server's flight", func(t *testing.T, c net.Conn) {
			writeOrFail(t, c, hello)
			if rec := readRecord(t, c); rec[0] != 22 || rec[5] != 2 {
				t.Fatalf("want a ServerHello, got % x", rec[:min(len(rec), 8)])
			}
			writeOrFail(t, c, unknownCA)
		}},
		{"in the hello's segment", func(t *testing.T, c net.Conn) {
			writeOrFail(t, c, append(append([]byte{}, hello...), unknownCA...))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", m.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			tc.send(t, c)
			checkUnknownCALine(t, m.refusalLine(t, c.LocalAddr().String(), mux.ReasonHandshake))
		})
	}
	t.Run("openssl s_client", func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Skip("openssl not installed")
		}
		lines := func() []string {
			var got []string
			for _, l := range strings.Split(m.logs.String(), "\n") {
				if strings.Contains(l, "reason="+mux.ReasonHandshake) {
					got = append(got, l)
				}
			}
			return got
		}
		before := len(lines())
		// -verify_return_error: refuse the test CA's certificate, as curl does.
		out, _ := exec.Command("openssl", "s_client", "-connect", m.addr, "-servername", "team-a.nexmux.test",
			"-tls1_3", "-verify_return_error", "-brief").CombinedOutput()
		if !strings.Contains(string(out), "verify") {
			t.Fatalf("openssl did not refuse the certificate:\n%s", out)
		}
		var line string
		eventually(t, func() (bool, string) {
			if got := lines(); len(got) > before {
				line = got[len(got)-1]
				return true, ""
			}
			return false, "no tls_handshake line for openssl"
		})
		checkUnknownCALine(t, line)
	})
}

func checkUnknownCALine(t *testing.T, line string) {
	t.Helper()
	if !strings.Contains(line, "unknown certificate authority") || strings.Contains(line, "bad record MAC") {
		t.Fatalf("log line %q: want the client's unknown_ca alert named, not bad record MAC", line)
	}
}

// echConfigList is an ECHConfigList (draft-ietf-tls-esni, version 0xfe0d)
// with a fresh X25519 key and public name, as a DNS HTTPS record would
// give a client.
func echConfigList(t *testing.T, publicName string) []byte {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0xfe0d)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			b.AddUint8(7)       // config_id
			b.AddUint16(0x0020) // DHKEM(X25519, HKDF-SHA256)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(k.PublicKey().Bytes()) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(1) // HKDF-SHA256
				b.AddUint16(1) // AES-128-GCM
			})
			b.AddUint8(0) // maximum_name_length
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(publicName)) })
			b.AddUint16(0) // extensions
		})
	})
	return b.BytesOrPanic()
}

// A client whose Encrypted Client Hello nexmux (which holds no ECH keys)
// passed over ends the handshake once it has checked the public name's
// certificate, with an ech_required alert right behind its Finished: for
// it the handshake failed. That alert is what net/http's first read gets;
// logged as a request net/http could not parse (malformed_request, and a
// JSON 400 written after the client's fatal alert), it hid why.
func TestClientAlertRightAfterTheHandshakeIsNoMalformedRequest(t *testing.T) {
	m := startMuxWith(t, muxConfig{})
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cfg := m.tlsConfig("team-a.nexmux.test")
	cfg.NextProtos = []string{"http/1.1"}
	cfg.EncryptedClientHelloConfigList = echConfigList(t, "team-a.nexmux.test")
	var rejected *tls.ECHRejectionError
	if err := tls.Client(c, cfg).Handshake(); !errors.As(err, &rejected) {
		t.Fatalf("client handshake: %v, want ECH rejected", err)
	}
	line := m.refusalLine(t, c.LocalAddr().String(), mux.ReasonHandshake)
	if !strings.Contains(line, "encrypted client hello required") {
		t.Fatalf("log line %q: want the client's ech_required alert named", line)
	}
	if n := m.refused.get(mux.ReasonMalformedRequest); n != 0 {
		t.Fatalf("%d malformed_request counted; log:\n%s", n, m.logs.String())
	}
}

// A client with no cipher suite or key exchange in common gets a
// handshake_failure alert, not a bare close, and the line names what was
// missing.
func TestNothingInCommonGetsHandshakeFailure(t *testing.T) {
	m := startMuxWith(t, muxConfig{})
	t.Run("TLS 1.2, CBC suites only", func(t *testing.T) {
		c, err := net.Dial("tcp", m.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		cfg := m.tlsConfig("team-a.nexmux.test")
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		if err := tls.Client(c, cfg).Handshake(); err == nil || !strings.Contains(err.Error(), "remote error: tls: handshake failure") {
			t.Fatalf("client handshake: %v, want a handshake_failure alert", err)
		}
		if line := m.refusalLine(t, c.LocalAddr().String(), mux.ReasonHandshake); !strings.Contains(line, "no cipher suite supported by both") {
			t.Fatalf("log line %q: want the missing suite named", line)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		log  string
	}{
		{"TLS 1.3, CCM suite only", []string{"-ciphersuites", "TLS_AES_128_CCM_SHA256"}, "no cipher suite supported by both"},
		{"TLS 1.3, finite-field groups only", []string{"-groups", "ffdhe2048"}, "no key exchanges supported by both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath("openssl"); err != nil {
				t.Skip("openssl not installed")
			}
			out, _ := exec.Command("openssl", append([]string{"s_client", "-connect", m.addr, "-servername", "team-a.nexmux.test",
				"-tls1_3", "-brief"}, tc.args...)...).CombinedOutput()
			if !strings.Contains(string(out), "alert handshake failure") {
				t.Fatalf("openssl did not get a handshake_failure alert:\n%s", out)
			}
			eventually(t, func() (bool, string) {
				return strings.Contains(m.logs.String(), tc.log), "no line naming " + tc.log
			})
		})
	}
}

// crypto/tls refuses a server name that ends in a dot with a bare "error
// decoding message", while routing took the name without its dot and the
// line shows it so: the line must say which part of the hello was refused.
func TestTrailingDotRefusalSaysWhy(t *testing.T) {
	m := startMuxWith(t, muxConfig{})
	c, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	writeOrFail(t, c, helloNaming(t, "team-a.nexmux.test."))
	if rec := readRecord(t, c); rec[0] != 21 || rec[6] != 50 {
		t.Fatalf("got % x, want a decode_error alert", rec)
	}
	line := m.refusalLine(t, c.LocalAddr().String(), mux.ReasonHandshake)
	if !strings.Contains(line, "ends in a dot") {
		t.Fatalf("log line %q: want the trailing dot named", line)
	}
}
