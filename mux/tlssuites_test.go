package mux_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// An openssl s_client sweep over every TLS 1.2 suite openssl knows: only
// ECDHE+AEAD suites complete a handshake, with an ECDSA and with an RSA
// certificate (static-RSA suites such as AES256-SHA need the latter).
func TestTLS12OffersAEADSuitesOnly(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed for the cipher sweep (apt-get install openssl)")
	}
	out, err := exec.Command("openssl", "ciphers", "-s", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").Output()
	if err != nil {
		t.Fatal(err)
	}
	var suites []string
	for _, c := range strings.Split(strings.TrimSpace(string(out)), ":") {
		// TLS 1.3 suites are listed too; -cipher does not take them.
		if !strings.HasPrefix(c, "TLS_") {
			suites = append(suites, c)
		}
	}
	rsaCert := rsaCertificate(t, "*.nexmux.test")
	for _, kind := range []struct {
		name string
		cert *tls.Certificate
		// must be refused before the fix; proves the sweep can fail
		weak string
	}{{"ecdsa", nil, "ECDHE-ECDSA-AES128-SHA"}, {"rsa", &rsaCert, "AES256-SHA"}} {
		t.Run(kind.name, func(t *testing.T) {
			m := startMuxWith(t, muxConfig{cert: kind.cert})
			var accepted []string
			for _, c := range suites {
				if handshakes(t, m.addr, c) {
					accepted = append(accepted, c)
				}
			}
			if len(accepted) == 0 {
				t.Fatalf("no TLS 1.2 suite accepted out of %d", len(suites))
			}
			for _, c := range accepted {
				if !strings.Contains(c, "GCM") && !strings.Contains(c, "CHACHA20") || !strings.HasPrefix(c, "ECDHE-") {
					t.Errorf("non-AEAD or non-ECDHE suite accepted: %s", c)
				}
			}
			if handshakes(t, m.addr, kind.weak) {
				t.Errorf("%s accepted", kind.weak)
			}
			t.Logf("accepted: %v", accepted)
		})
	}
}

// handshakes reports whether openssl completes a TLS 1.2 handshake with
// only the suite c offered.
func handshakes(t *testing.T, addr, c string) bool {
	cmd := exec.Command("openssl", "s_client", "-connect", addr, "-servername", "team-a.nexmux.test",
		"-tls1_2", "-cipher", c+":@SECLEVEL=0", "-brief")
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	return strings.Contains(string(out), "CONNECTION ESTABLISHED") || strings.Contains(string(out), "Ciphersuite: "+c)
}

func rsaCertificate(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
