package mux_test

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

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
