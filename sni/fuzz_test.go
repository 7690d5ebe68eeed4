package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz seed files from freshly captured hellos")

// seedHellos are real first flights, framed as clients and middleboxes send them.
func seedHellos(tb testing.TB) map[string][]byte {
	def := goHello(tb)
	return map[string][]byte{
		"go-default-pq":           def,
		"go-tls12":                captureHello(tb, &tls.Config{ServerName: "team-a.example.com", MaxVersion: tls.VersionTLS12}),
		"go-no-sni":               captureHello(tb, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}),
		"go-records-1-7-100-300":  reframe(handshakeMessage(tb, def), 1, 7, 100, 300),
		"go-sni-trailing-dot-mix": withSNI(tb, "Team-A.Example.COM."),
	}
}

// checkServerName holds for every name parseClientHello accepts: routing
// tables can compare it byte for byte with lowercase relative names.
func checkServerName(t *testing.T, name string) {
	if strings.HasSuffix(name, ".") {
		t.Fatalf("server name %q has a trailing dot", name)
	}
	if strings.ContainsAny(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ\x00") {
		t.Fatalf("server name %q is not lowercased or contains NUL", name)
	}
}

func FuzzParseClientHello(f *testing.F) {
	for _, raw := range seedHellos(f) {
		f.Add(handshakeMessage(f, raw)[4:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		name, alpn, err := parseClientHello(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		checkServerName(t, name)
		for _, p := range alpn {
			if p == "" {
				t.Fatal("empty ALPN protocol accepted")
			}
		}
	})
}

func FuzzReadClientHello(f *testing.F) {
	for _, raw := range seedHellos(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := ReadClientHello(r)
		consumed := len(data) - r.Len()
		if h == nil {
			if err == nil || consumed != 0 {
				t.Fatalf("nil hello with err=%v after consuming %d bytes", err, consumed)
			}
			return
		}
		if !bytes.Equal(h.Raw, data[:consumed]) {
			t.Fatalf("Raw (%d bytes) is not exactly the %d bytes consumed", len(h.Raw), consumed)
		}
		if len(h.Raw) > MaxHelloBytes {
			t.Fatalf("read %d bytes, over MaxHelloBytes", len(h.Raw))
		}
		if err != nil {
			if !errors.Is(err, ErrNotTLS) && !errors.Is(err, ErrMalformed) &&
				!errors.Is(err, ErrTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		checkServerName(t, h.ServerName)
	})
}

// TestUpdateFuzzCorpus regenerates the committed seed corpus, so that plain
// `go test` (and CI) replays real hellos from several clients through the
// fuzz targets: go test -run TestUpdateFuzzCorpus ./sni -update-corpus
func TestUpdateFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("pass -update-corpus to regenerate testdata/fuzz")
	}
	seeds := seedHellos(t)
	if _, err := exec.LookPath("openssl"); err == nil {
		h, err := openSSLHello(t, "-servername", "Team-A.Example.COM.", "-alpn", "h2,http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		seeds["openssl-trailing-dot"] = h.Raw
	}
	for name, raw := range seeds {
		writeCorpusFile(t, "FuzzReadClientHello", name, raw)
		writeCorpusFile(t, "FuzzParseClientHello", name, handshakeMessage(t, raw)[4:])
	}
}

func writeCorpusFile(t *testing.T, target, name string, data []byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkReadClientHello(b *testing.B) {
	raw := goHello(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	r := bytes.NewReader(raw)
	for b.Loop() {
		r.Reset(raw)
		if _, err := ReadClientHello(r); err != nil {
			b.Fatal(err)
		}
	}
}
