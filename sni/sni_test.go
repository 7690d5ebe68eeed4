package sni

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// tcpSegment is the payload of one full-size segment on a 1500-byte MTU path
// with TCP timestamps; a hello larger than this cannot arrive in one read.
const tcpSegment = 1448

func checkHello(t *testing.T, h *ClientHello, err error, wantName string, wantALPN []string) {
	t.Helper()
	if err != nil {
		t.Fatalf("ReadClientHello: %v", err)
	}
	if h.ServerName != wantName {
		t.Errorf("ServerName = %q, want %q", h.ServerName, wantName)
	}
	if !slices.Equal(h.ALPN, wantALPN) {
		t.Errorf("ALPN = %q, want %q", h.ALPN, wantALPN)
	}
}

func TestReadClientHelloRealHellos(t *testing.T) {
	alpn := []string{"h2", "http/1.1"}
	tests := []struct {
		name     string
		cfg      *tls.Config
		wantName string
		wantALPN []string
		minRaw   int
		sent     string // proves the client sent the name as we think
	}{
		{
			// X25519MLKEM768 is in Go's default key shares since 1.24.
			name:     "go default config, post-quantum key share",
			cfg:      &tls.Config{ServerName: "team-a.example.com", NextProtos: alpn},
			wantName: "team-a.example.com", wantALPN: alpn, minRaw: tcpSegment + 1,
		},
		{
			name:     "tls 1.2 only",
			cfg:      &tls.Config{ServerName: "team-a.example.com", NextProtos: alpn, MaxVersion: tls.VersionTLS12},
			wantName: "team-a.example.com", wantALPN: alpn,
		},
		{
			name:     "mixed case is lowercased",
			cfg:      &tls.Config{ServerName: "Team-A.example.com", NextProtos: []string{"acme-tls/1"}},
			wantName: "team-a.example.com", wantALPN: []string{"acme-tls/1"}, sent: "Team-A.example.com",
		},
		{
			name:     "no ALPN",
			cfg:      &tls.Config{ServerName: "team-a.example.com"},
			wantName: "team-a.example.com",
		},
		{
			name:     "no SNI",
			cfg:      &tls.Config{ServerName: "", InsecureSkipVerify: true, NextProtos: alpn},
			wantName: "", wantALPN: alpn,
		},
		{
			// crypto/tls never puts IP literals in SNI (RFC 6066).
			name:     "IP literal server name sends no SNI",
			cfg:      &tls.Config{ServerName: "192.0.2.1"},
			wantName: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := captureHello(t, tt.cfg)
			if len(raw) < tt.minRaw {
				t.Fatalf("hello is %d bytes, want at least %d; did the default key shares change?", len(raw), tt.minRaw)
			}
			if !bytes.Contains(raw, []byte(tt.sent)) {
				t.Fatalf("client did not send %q", tt.sent)
			}
			r := newCountingReader(append(bytes.Clone(raw), "early data that must not be read"...))
			h, err := ReadClientHello(r)
			checkHello(t, h, err, tt.wantName, tt.wantALPN)
			if !bytes.Equal(h.Raw, raw) {
				t.Errorf("Raw (%d bytes) differs from the %d bytes the client sent", len(h.Raw), len(raw))
			}
			if r.read != len(raw) {
				t.Errorf("consumed %d bytes, want exactly the %d-byte hello", r.read, len(raw))
			}
		})
	}
}

func TestReadClientHelloFragmented(t *testing.T) {
	msg := handshakeMessage(t, goHello(t))
	tests := []struct {
		name  string
		sizes []int
	}{
		{"1-byte records", []int{1}},
		{"7-byte records", []int{7}},
		{"100-byte records", []int{100}},
		{"300-byte records", []int{300}},
		{"header split from body", []int{4, 1 << 14}},
		{"mixed 1,7,100,300", []int{1, 7, 100, 300}},
		{"one max-size record", []int{1 << 14}},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte per Read", iotest.OneByteReader},
		{"half reads", iotest.HalfReader},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				framed := reframe(msg, tt.sizes...)
				trailer := reframe([]byte{1, 0, 0, 0}, 4) // a second hello must stay unread
				r := newCountingReader(append(bytes.Clone(framed), trailer...))
				h, err := ReadClientHello(rd.wrap(r))
				checkHello(t, h, err, "team-a.example.com", []string{"h2", "http/1.1"})
				if !bytes.Equal(h.Raw, framed) {
					t.Errorf("Raw differs from the re-framed bytes (%d vs %d bytes)", len(h.Raw), len(framed))
				}
				if r.read != len(framed) {
					t.Errorf("consumed %d bytes, want %d", r.read, len(framed))
				}
			})
		}
	}
}

// TestReadClientHelloDribble sends one byte per write over real connections,
// so every record header and body arrives in many reads.
func TestReadClientHelloDribble(t *testing.T) {
	raw := goHello(t)
	pipes := []struct {
		name string
		pair func(t *testing.T) (client, server net.Conn)
	}{
		{"net.Pipe", func(*testing.T) (net.Conn, net.Conn) { return net.Pipe() }},
		{"tcp loopback", func(t *testing.T) (net.Conn, net.Conn) { return testnet.Pair(t) }},
	}
	payloads := []struct {
		name  string
		bytes []byte
	}{
		{"original framing", raw},
		{"1-byte records", reframe(handshakeMessage(t, raw), 1)},
	}
	for _, p := range pipes {
		for _, pl := range payloads {
			t.Run(p.name+"/"+pl.name, func(t *testing.T) {
				client, server := p.pair(t)
				defer client.Close()
				defer server.Close()
				werr := make(chan error, 1)
				go func() {
					for i := range pl.bytes {
						if _, err := client.Write(pl.bytes[i : i+1]); err != nil {
							werr <- err
							return
						}
					}
					werr <- nil
				}()
				hello, err := ReadClientHello(server)
				checkHello(t, hello, err, "team-a.example.com", []string{"h2", "http/1.1"})
				if !bytes.Equal(hello.Raw, pl.bytes) {
					t.Errorf("Raw differs from what was written")
				}
				if err := <-werr; err != nil {
					t.Fatalf("writer: %v", err)
				}
			})
		}
	}
}

// TestReplayThenHandshake proves nothing is lost: the server reads the
// hello, then crypto/tls runs a full handshake over a ReplayConn and echoes
// data.
func TestReplayThenHandshake(t *testing.T) {
	cert := mustCert(t)
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	tests := []struct {
		name       string
		serverName string
		maxVersion uint16
		alpn       []string
		wantName   string
	}{
		{"tls 1.3 with post-quantum key share", "team-a.example.com", 0, []string{"h2", "http/1.1"}, "team-a.example.com"},
		{"tls 1.2", "team-a.example.com", tls.VersionTLS12, []string{"http/1.1"}, "team-a.example.com"},
		{"ip literal, no SNI", "127.0.0.1", 0, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			type result struct {
				hello *ClientHello
				info  string // SNI as crypto/tls saw it after our read
				err   error
			}
			done := make(chan result, 1)
			go func() {
				var res result
				defer func() { done <- res }()
				raw, err := ln.Accept()
				if err != nil {
					res.err = err
					return
				}
				defer raw.Close()
				_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
				res.hello, res.err = ReadClientHello(raw)
				if res.err != nil {
					return
				}
				// Reading the hello again from a ReplayConn sees the same
				// bytes, so layered listeners can each read it.
				again, err := ReadClientHello(NewReplayConn(raw, res.hello.Raw))
				if err != nil || !bytes.Equal(again.Raw, res.hello.Raw) {
					res.err = fmt.Errorf("re-read: %v", err)
					return
				}
				_ = raw.SetReadDeadline(time.Time{})
				srv := tls.Server(NewReplayConn(raw, again.Raw), &tls.Config{
					Certificates: []tls.Certificate{cert},
					NextProtos:   []string{"h2", "http/1.1"},
					GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
						res.info = chi.ServerName
						return nil, nil
					},
				})
				if res.err = srv.Handshake(); res.err != nil {
					return
				}
				_, res.err = io.Copy(srv, srv) // echo until the client closes
			}()

			cfg := &tls.Config{ServerName: tt.serverName, RootCAs: roots, NextProtos: tt.alpn, MaxVersion: tt.maxVersion}
			client, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
			if err != nil {
				t.Fatalf("client handshake through the replaying server: %v", err)
			}
			msg := []byte(strings.Repeat("ping ", 1000))
			if _, err := client.Write(msg); err != nil {
				t.Fatal(err)
			}
			echo := make([]byte, len(msg))
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(client, echo); err != nil {
				t.Fatalf("reading echo: %v", err)
			}
			if !bytes.Equal(echo, msg) {
				t.Fatal("echo mismatch")
			}
			if len(tt.alpn) > 0 && client.ConnectionState().NegotiatedProtocol != tt.alpn[0] {
				t.Errorf("negotiated %q, want %q", client.ConnectionState().NegotiatedProtocol, tt.alpn[0])
			}
			client.Close()

			res := <-done
			if res.err != nil && !errors.Is(res.err, io.EOF) {
				t.Fatalf("server: %v", res.err)
			}
			checkHello(t, res.hello, nil, tt.wantName, tt.alpn)
			if res.info != tt.wantName {
				t.Errorf("crypto/tls saw SNI %q after our read, want %q", res.info, tt.wantName)
			}
		})
	}
}

// TestOpenSSLClient uses a non-Go client, which (unlike crypto/tls) sends a
// trailing dot and mixed case exactly as given.
func TestOpenSSLClient(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not on PATH; skipping the non-Go client check")
	}
	tests := []struct {
		name     string
		args     []string
		wantName string
		wantALPN []string
		sent     string // proves openssl sent the name verbatim
	}{
		{"trailing dot and mixed case", []string{"-servername", "Team-A.Example.COM.", "-alpn", "h2,http/1.1"}, "team-a.example.com", []string{"h2", "http/1.1"}, "Team-A.Example.COM."},
		{"no server name", []string{"-noservername"}, "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello, err := openSSLHello(t, tt.args...)
			checkHello(t, hello, err, tt.wantName, tt.wantALPN)
			if !bytes.Contains(hello.Raw, []byte(tt.sent)) {
				t.Errorf("openssl did not send %q", tt.sent)
			}
		})
	}
}

// openSSLHello runs openssl s_client against a listener that reads the
// hello and hangs up, returning what was read.
func openSSLHello(tb testing.TB, args ...string) (*ClientHello, error) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		hello *ClientHello
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := ReadClientHello(c)
		done <- result{h, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", append([]string{"s_client", "-connect", ln.Addr().String()}, args...)...)
	cmd.Stdin = nil                // /dev/null: s_client quits instead of waiting for input
	out, _ := cmd.CombinedOutput() // exits non-zero: we hang up mid-handshake
	select {
	case res := <-done:
		if res.hello == nil {
			tb.Fatalf("read: %v\nopenssl output:\n%s", res.err, out)
		}
		return res.hello, res.err
	case <-time.After(10 * time.Second):
		tb.Fatalf("listener did not get a hello\nopenssl output:\n%s", out)
	}
	return nil, nil
}

// TestServerNameNormalization edits the server_name of a real hello, because
// crypto/tls clients strip trailing dots and crypto/tls servers reject them.
func TestServerNameNormalization(t *testing.T) {
	tests := []struct {
		name    string
		sni     string
		want    string
		wantErr bool
	}{
		{"trailing dot and mixed case", "Team-A.Example.COM.", "team-a.example.com", false},
		{"every upper-case letter", "ABCDEFGHIJKLM.NOPQRSTUVWXYZ.example", "abcdefghijklm.nopqrstuvwxyz.example", false},
		{"single label with dot", "LOCALHOST.", "localhost", false},
		{"non-ASCII bytes kept", "Bücher.example.", "b\xc3\xbccher.example", false},
		{"only a dot", ".", "", true},
		{"two trailing dots", "team-a.example.com..", "", true},
		{"empty host_name", "", "", true},
		{"NUL inside", "team-a.example.com\x00.evil.com", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := withSNI(t, tt.sni)
			h, err := ReadClientHello(bytes.NewReader(raw))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				if h == nil || !bytes.Equal(h.Raw, raw) {
					t.Error("partial Raw not returned with the error")
				}
				return
			}
			checkHello(t, h, err, tt.want, []string{"h2", "http/1.1"})
		})
	}

	t.Run("crypto/tls server rejects what we accept", func(t *testing.T) {
		c, s := testnet.Pair(t)
		if _, err := c.Write(withSNI(t, "team-a.example.com.")); err != nil {
			t.Fatal(err)
		}
		err := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{mustCert(t)}}).Handshake()
		if err == nil {
			t.Fatal("crypto/tls accepted a trailing-dot SNI; the custom parser may no longer be needed")
		}
		// Refused for the hello itself (a decode_error alert), not for
		// anything later in a handshake that went on.
		alert := make([]byte, 7)
		if _, rerr := io.ReadFull(c, alert); rerr != nil || alert[0] != recordTypeAlert || Alert(alert[6]) != AlertDecodeError {
			t.Fatalf("handshake error %v; client got % x (%v), want a decode_error alert", err, alert, rerr)
		}
	})
}

func TestParseClientHello(t *testing.T) {
	msg := handshakeMessage(t, goHello(t))
	type edit func(p *helloParts)
	tests := []struct {
		name     string
		edit     edit
		wantName string
		wantALPN []string
		wantErr  bool
	}{
		{"unchanged", func(*helloParts) {}, "team-a.example.com", []string{"h2", "http/1.1"}, false},
		{"no extensions block (old hello)", func(p *helloParts) { p.noExtensions = true }, "", nil, false},
		{"empty extensions block", func(p *helloParts) { p.exts = nil }, "", nil, false},
		{"unknown name_type before host_name", func(p *helloParts) {
			p.setExt(0, sniExt(sniEntry{7, "opaque"}, sniEntry{0, "B.example"}))
		}, "b.example", []string{"h2", "http/1.1"}, false},
		{"only unknown name types", func(p *helloParts) { p.setExt(0, sniExt(sniEntry{7, "x"})) }, "", []string{"h2", "http/1.1"}, false},
		{"ALPN order kept", func(p *helloParts) { p.setExt(16, alpnExt("http/1.1", "h2", "x")) }, "team-a.example.com", []string{"http/1.1", "h2", "x"}, false},
		{"session id 32", func(p *helloParts) { p.sessionID = make([]byte, 32) }, "team-a.example.com", []string{"h2", "http/1.1"}, false},

		{"session id 33", func(p *helloParts) { p.sessionID = make([]byte, 33) }, "", nil, true},
		{"no cipher suites", func(p *helloParts) { p.suites = nil }, "", nil, true},
		{"odd cipher suites", func(p *helloParts) { p.suites = p.suites[:3] }, "", nil, true},
		{"no compression methods", func(p *helloParts) { p.compression = nil }, "", nil, true},
		{"trailing bytes after extensions", func(p *helloParts) { p.trailing = []byte{0} }, "", nil, true},
		{"duplicate unrelated extension", func(p *helloParts) { p.exts = append(p.exts, ext{0xfe0d, nil}, ext{0xfe0d, nil}) }, "", nil, true},
		{"duplicate server_name", func(p *helloParts) {
			p.exts = append(p.exts, ext{0, sniExt(sniEntry{0, "other.example"})})
		}, "", nil, true},
		{"two host_name entries", func(p *helloParts) {
			p.setExt(0, sniExt(sniEntry{0, "first.example"}, sniEntry{0, "second.example"}))
		}, "", nil, true},
		{"empty server_name extension", func(p *helloParts) { p.setExt(0, nil) }, "", nil, true},
		{"empty server_name list", func(p *helloParts) { p.setExt(0, sniExt()) }, "", nil, true},
		{"server_name entry truncated", func(p *helloParts) { p.setExt(0, []byte{0, 4, 0, 0, 9, 'a'}) }, "", nil, true},
		{"bytes after server_name list", func(p *helloParts) {
			p.setExt(0, append(sniExt(sniEntry{0, "a.example"}), 0))
		}, "", nil, true},
		{"empty ALPN list", func(p *helloParts) { p.setExt(16, alpnExt()) }, "", nil, true},
		{"empty ALPN protocol", func(p *helloParts) { p.setExt(16, alpnExt("h2", "")) }, "", nil, true},
		{"ALPN protocol overruns list", func(p *helloParts) { p.setExt(16, []byte{0, 3, 5, 'h', '2'}) }, "", nil, true},
		{"bytes after ALPN list", func(p *helloParts) { p.setExt(16, append(alpnExt("h2"), 1)) }, "", nil, true},
		// Past 32 extensions the duplicate check moves to a map: a second
		// copy there must still be refused, whether the first came before
		// the move (the real hello's server_name) or after it.
		{"duplicate server_name after 40 extensions", func(p *helloParts) {
			p.exts = append(p.exts, manyExts(40)...)
			p.exts = append(p.exts, ext{0, sniExt(sniEntry{0, "other.example"})})
		}, "", nil, true},
		{"duplicate among 40 extensions", func(p *helloParts) {
			p.exts = append(p.exts, manyExts(40)...)
			p.exts = append(p.exts, ext{0xf000 + 35, nil})
		}, "", nil, true},
		{"40 distinct extensions", func(p *helloParts) { p.exts = append(p.exts, manyExts(40)...) }, "team-a.example.com", []string{"h2", "http/1.1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := splitHello(t, msg)
			tt.edit(p)
			name, alpn, err := parseClientHello(p.body())
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if name != tt.wantName || !slices.Equal(alpn, tt.wantALPN) {
				t.Errorf("got %q %q, want %q %q", name, alpn, tt.wantName, tt.wantALPN)
			}
		})
	}

	t.Run("every truncation", func(t *testing.T) {
		body := msg[4:]
		p := splitHello(t, msg)
		p.noExtensions = true
		legacyEnd := len(p.body()) // a hello may legally end before extensions
		for n := range len(body) {
			_, _, err := parseClientHello(body[:n])
			if n == legacyEnd {
				if err != nil {
					t.Errorf("truncated to the legacy fields (%d bytes): %v", n, err)
				}
				continue
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated to %d of %d bytes: err = %v, want ErrMalformed", n, len(body), err)
			}
		}
	})
}

// A hello that fills one maximum-size record (2^14 bytes of payload) is
// legal TLS and is read; one byte more in a second record is over the cap.
func TestHelloFillingOneFullRecord(t *testing.T) {
	msg := handshakeMessage(t, goHello(t))
	h := splitHello(t, msg)
	// Grow an unknown extension until the message is exactly 2^14 bytes.
	h.exts = append(h.exts, ext{0xfe00, nil})
	pad := 1<<14 - len(h.message())
	h.exts[len(h.exts)-1].data = make([]byte, pad)
	full := h.message()
	if len(full) != 1<<14 {
		t.Fatalf("built a %d-byte hello, want %d", len(full), 1<<14)
	}
	rec := reframe(full, 1<<14)
	got, err := ReadClientHello(bytes.NewReader(rec))
	if err != nil {
		t.Fatalf("hello filling one full record: %v", err)
	}
	if len(got.Raw) != len(rec) {
		t.Fatalf("read %d bytes, want the %d-byte record", len(got.Raw), len(rec))
	}
	h.exts[len(h.exts)-1].data = make([]byte, pad+1)
	if _, err := ReadClientHello(bytes.NewReader(reframe(h.message(), 1<<14))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte more: %v, want ErrTooLarge", err)
	}
}

// The cap counts every byte read, record headers included: a hello in two
// records (the first of one byte, so its length is not known before the
// second is read) that comes to MaxHelloBytes in all is read; one byte
// more is over the cap.
func TestHelloCapCountsEveryByteRead(t *testing.T) {
	h := splitHello(t, handshakeMessage(t, goHello(t)))
	h.exts = append(h.exts, ext{0xfe00, nil})
	pad := MaxHelloBytes - 2*recordHeaderLen - len(h.message())
	h.exts[len(h.exts)-1].data = make([]byte, pad)
	in := reframe(h.message(), 1, 1<<14)
	if len(in) != MaxHelloBytes {
		t.Fatalf("built %d bytes, want %d", len(in), MaxHelloBytes)
	}
	if _, err := ReadClientHello(bytes.NewReader(in)); err != nil {
		t.Fatalf("hello of MaxHelloBytes in two records: %v", err)
	}
	h.exts[len(h.exts)-1].data = make([]byte, pad+1)
	if _, err := ReadClientHello(bytes.NewReader(reframe(h.message(), 1, 1<<14))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte more: %v, want ErrTooLarge", err)
	}
}

// Bytes after the ClientHello in its last record are refused, never
// parsed as part of it: here a hello without extensions is followed by the
// extensions block of another, server_name included. Routing by that name
// while a TLS stack behind reads the hello (and no name) would let a client
// steer past the routing decision.
func TestNoServerNameFromBehindTheHello(t *testing.T) {
	h := splitHello(t, handshakeMessage(t, goHello(t)))
	withExts := h.body()
	h.noExtensions = true
	msg := h.message()
	exts := withExts[len(h.body()):]
	if got, err := ReadClientHello(bytes.NewReader(reframe(append(msg, exts...), 1<<14))); !errors.Is(err, ErrMalformed) {
		name := ""
		if got != nil {
			name = got.ServerName
		}
		t.Fatalf("hello without extensions, extensions behind it in its record: server name %q, %v; want ErrMalformed", name, err)
	}
}

func TestReadClientHelloErrors(t *testing.T) {
	raw := goHello(t)
	msg := handshakeMessage(t, raw)
	firstRecord := raw[:5+(int(raw[3])<<8|int(raw[4]))]

	declares20K := bytes.Clone(firstRecord)
	declares20K[6], declares20K[7], declares20K[8] = 0, 20480>>8, 20480&0xff
	declares20K = append(declares20K, make([]byte, 20<<10)...)

	// A ~3 KB hello (Go offering every hybrid key share, say) is fine as
	// sent but exceeds the cap once chopped into 1-byte records.
	big := splitHello(t, msg)
	big.exts = append(big.exts, ext{0xfe00, make([]byte, 3000)})
	bigMsg := big.message()

	var (
		httpReq = []byte("GET / HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n")
		alert   = []byte{21, 3, 3, 0, 2, 2, 40}
		errBoom = errors.New("boom")
		split   = reframe(msg, 100)
		// A whole, well-formed hello body under another handshake type:
		// only the type tells it is no ClientHello.
		hsType2 = reframe(append([]byte{2}, msg[1:]...), len(msg))
		// The same hello declaring 64 KiB more than it holds: the length's
		// high byte counts.
		declaresPlus64K = reframe(append([]byte{msg[0], msg[1] + 1}, msg[2:]...), len(msg))
		// The handshake header split over two records, then a full-size
		// record: the cap is hit before its body is read, even though the
		// hello's length is not known yet.
		pastCapUnknownLen = append([]byte{22, 3, 1, 0, 1, 1, 22, 3, 1, 0x40, 0}, make([]byte, 1<<14)...)
		trailing          = reframe(append(bytes.Clone(msg), 1, 0, 0, 0), len(msg)+4)
	)
	tests := []struct {
		name     string
		input    io.Reader
		in       []byte // what the reader holds, for Raw checks
		want     error
		wantRead int // bytes that may be consumed; -1 means all of in
	}{
		{"empty connection", nil, nil, io.EOF, 0},
		{"http request", nil, httpReq, ErrNotTLS, 5},
		{"ssh banner", nil, []byte("SSH-2.0-OpenSSH_9.6\r\n"), ErrNotTLS, 5},
		{"sslv2 hello", nil, []byte{0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15}, ErrNotTLS, 5},
		{"handshake with version major 2", nil, append([]byte{22, 2, 0, 0, 4}, 1, 0, 0, 0), ErrNotTLS, 5},
		{"alert record first", nil, alert, ErrNotTLS, 5},
		{"alert after first fragment", nil, append(bytes.Clone(split[:105]), alert...), ErrMalformed, 110},
		{"change_cipher_spec mid-hello", nil, append(bytes.Clone(split[:105]), 20, 3, 3, 0, 1, 1), ErrMalformed, 110},
		{"server_hello first", nil, hsType2, ErrMalformed, -1},
		{"hello declares 64 KiB more than it holds", nil, declaresPlus64K, ErrTooLarge, -1},
		{"full record past the cap before the length is known", nil, pastCapUnknownLen, ErrTooLarge, 11},
		{"empty handshake record", nil, []byte{22, 3, 1, 0, 0}, ErrMalformed, -1},
		{"record longer than 2^14", nil, append([]byte{22, 3, 1, 0x40, 0x01}, make([]byte, 1<<14+1)...), ErrMalformed, 5},
		{"hello declares 20 KiB", nil, declares20K, ErrTooLarge, len(firstRecord)},
		{"1-byte records over the cap", nil, reframe(bigMsg, 1), ErrTooLarge, MaxHelloBytes - MaxHelloBytes%6},
		{"bytes after hello in its record", nil, trailing, ErrMalformed, -1},
		{"truncated inside record header", nil, raw[:3], io.ErrUnexpectedEOF, -1},
		{"truncated inside record body", nil, raw[:len(raw)/2], io.ErrUnexpectedEOF, -1},
		// A client that sent a record header and closed is not a health
		// check that connected and closed (io.EOF).
		{"closed right after a record header", nil, raw[:5], io.ErrUnexpectedEOF, -1},
		{"truncated at record boundary", nil, split[:105*3], io.ErrUnexpectedEOF, -1},
		{"reader error", iotest.ErrReader(errBoom), nil, errBoom, 0},
		{"reader error mid-hello", io.MultiReader(bytes.NewReader(raw[:700]), iotest.ErrReader(errBoom)), raw[:700], errBoom, 700},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr := newCountingReader(tt.in)
			var r io.Reader = cr
			if tt.input != nil {
				r = tt.input
			}
			h, err := ReadClientHello(r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			want := tt.wantRead
			if want < 0 {
				want = len(tt.in)
			}
			if tt.input == nil && cr.read != want {
				t.Errorf("consumed %d bytes, want %d", cr.read, want)
			}
			switch {
			case want == 0 && h != nil:
				t.Errorf("got a hello %+v with nothing read", h)
			case want > 0 && (h == nil || !bytes.Equal(h.Raw, tt.in[:want])):
				t.Errorf("partial Raw does not hold exactly the %d consumed bytes", want)
			}
			if h != nil && len(h.Raw) > MaxHelloBytes {
				t.Errorf("Raw is %d bytes, over MaxHelloBytes", len(h.Raw))
			}
		})
	}
}

// TestReadClientHelloTimeout covers a client that starts a hello and stalls:
// ReadClientHello gives up at the read deadline with a net.Error timeout and
// returns the bytes it read, so a ReplayConn still yields the whole hello
// once the deadline is cleared and the rest arrives.
func TestReadClientHelloTimeout(t *testing.T) {
	raw := goHello(t)
	for _, p := range []struct {
		name string
		pair func(t *testing.T) (net.Conn, net.Conn)
	}{
		{"net.Pipe", func(*testing.T) (net.Conn, net.Conn) { return net.Pipe() }},
		{"tcp loopback", func(t *testing.T) (net.Conn, net.Conn) { return testnet.Pair(t) }},
	} {
		t.Run(p.name, func(t *testing.T) {
			client, server := p.pair(t)
			defer client.Close()
			defer server.Close()
			go client.Write(raw[:3])

			start := time.Now()
			_ = server.SetReadDeadline(start.Add(200 * time.Millisecond))
			hello, err := ReadClientHello(server)
			elapsed := time.Since(start)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("err = %v, want a net.Error timeout", err)
			}
			if elapsed < 150*time.Millisecond || elapsed > 5*time.Second {
				t.Errorf("ReadClientHello returned after %v with a 200ms deadline", elapsed)
			}
			if hello == nil || !bytes.Equal(hello.Raw, raw[:3]) {
				t.Fatalf("partial Raw = %v, want the 3 bytes sent", hello)
			}

			// Without the deadline, the rest arrives later and reads
			// through the ReplayConn yield the whole hello.
			_ = server.SetReadDeadline(time.Time{})
			go client.Write(raw[3:])
			h, err := ReadClientHello(NewReplayConn(server, hello.Raw))
			checkHello(t, h, err, "team-a.example.com", []string{"h2", "http/1.1"})
		})
	}
}

func TestReplayConn(t *testing.T) {
	client, server := testnet.Pair(t)
	c := NewReplayConn(server, []byte("hello "))
	go func() {
		client.Write([]byte("world"))
		client.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 4)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "hell" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	// The rest of the prefix comes alone: a Read never waits on the
	// connection while replayed bytes are left.
	n, err = c.Read(make([]byte, 64))
	if err != nil || n != 2 {
		t.Fatalf("second Read = %d, %v; want the 2 prefix bytes left", n, err)
	}
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "world" {
		t.Fatalf("ReadAll = %q, %v", rest, err)
	}
}
