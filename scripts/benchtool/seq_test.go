package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// seqServer is the backend behind TLS, for *.seq.test, recording what
// reached it; caFile verifies its certificate.
type seqServer struct {
	addr, caFile string
	mu           sync.Mutex
	conns        int
	requests     []string // METHOD path name
	resumed      int
}

func startSeqServer(t *testing.T, blobSize int64) *seqServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "seq.test"},
		DNSNames: []string{"seq.test", "*.seq.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s := &seqServer{caFile: filepath.Join(t.TempDir(), "ca.crt")}
	if err := os.WriteFile(s.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &backend{blobSize: blobSize}
	cleanup, err := b.makeBlob()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.URL.Path+" "+r.TLS.ServerName)
		if r.TLS.DidResume {
			s.resumed++
		}
		s.mu.Unlock()
		b.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.addr = srv.Listener.Addr().String()
	return s
}

func (s *seqServer) run(t *testing.T, o seqOpts) (string, error) {
	t.Helper()
	o.addr, o.caFile = s.addr, s.caFile
	if o.sni == "" {
		o.sni = "seq.test"
	}
	var out bytes.Buffer
	err := runSeq(o, strings.NewReader("go\n"), &out)
	return out.String(), err
}

func TestSeqKinds(t *testing.T) {
	t.Run("handshake", func(t *testing.T) {
		s := startSeqServer(t, patternSize)
		out, err := s.run(t, seqOpts{kind: "handshake", warm: 2, n: 7, conns: 1, sniFmt: "r%02d.seq.test", sniN: 3})
		if err != nil || out != "READY\nDONE\n" {
			t.Fatalf("out %q, err %v", out, err)
		}
		// One connection per request, none resumed, the names in turn.
		if s.conns != 9 || s.resumed != 0 || len(s.requests) != 9 {
			t.Errorf("%d connections, %d resumed, %d requests; want 9, 0, 9", s.conns, s.resumed, len(s.requests))
		}
		for i, r := range s.requests {
			if want := "HEAD /v2/app/manifests/latest r0" + string(rune('0'+i%3)) + ".seq.test"; r != want {
				t.Errorf("request %d: %q, want %q", i, r, want)
			}
		}
	})
	t.Run("pull", func(t *testing.T) {
		s := startSeqServer(t, patternSize)
		if out, err := s.run(t, seqOpts{kind: "pull", warm: 1, n: 2, conns: 1, blobSize: patternSize}); err != nil || out != "READY\nDONE\n" {
			t.Fatalf("out %q, err %v", out, err)
		}
		if s.conns != 1 || len(s.requests) != 3 || s.requests[0] != "GET /v2/app/blobs/"+blobDigest()+" seq.test" {
			t.Errorf("%d connections, requests %q", s.conns, s.requests)
		}
		// A body shorter than the blob the client expects is an error.
		if _, err := s.run(t, seqOpts{kind: "pull", warm: 1, n: 1, conns: 1, blobSize: 2 * patternSize}); err == nil {
			t.Error("a 1 MiB blob passed for 2 MiB")
		}
	})
	t.Run("push", func(t *testing.T) {
		s := startSeqServer(t, patternSize)
		if out, err := s.run(t, seqOpts{kind: "push", warm: 1, n: 2, conns: 2, pushSize: 300000}); err != nil || out != "READY\nDONE\n" {
			t.Fatalf("out %q, err %v", out, err)
		}
		var patches, puts int
		for _, r := range s.requests {
			switch {
			case strings.HasPrefix(r, "PATCH /v2/app/blobs/uploads/"):
				patches++
			case strings.HasPrefix(r, "PUT /v2/app/blobs/uploads/"):
				puts++
			}
		}
		if s.conns != 2 || patches != 3 || puts != 3 {
			t.Errorf("%d connections, %d PATCH, %d PUT; want 2, 3, 3", s.conns, patches, puts)
		}
	})
	t.Run("manifest", func(t *testing.T) {
		s := startSeqServer(t, patternSize)
		if out, err := s.run(t, seqOpts{kind: "manifest", method: "GET", warm: 3, n: 4, conns: 2, sniFmt: "r%02d.seq.test", sniN: 5}); err != nil || out != "READY\nDONE\n" {
			t.Fatalf("out %q, err %v", out, err)
		}
		names := map[string]int{}
		for _, r := range s.requests {
			names[r]++
		}
		// Keep-alive: each connection keeps its own name.
		if s.conns != 2 || names["GET /v2/app/manifests/latest r00.seq.test"] != 4 || names["GET /v2/app/manifests/latest r01.seq.test"] != 3 {
			t.Errorf("%d connections, requests %v", s.conns, names)
		}
	})
}
