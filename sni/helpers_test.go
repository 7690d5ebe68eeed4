package sni

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/nexmux/nexmux/internal/testnet"
)

// captureHello returns the records a real crypto/tls client sends first.
func captureHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	out := testnet.ClientHello(tb, cfg)
	handshakeMessage(tb, out) // sanity: whole handshake records only
	return out
}

// goHello is a hello from the default Go client config, which in Go 1.24+
// carries an X25519MLKEM768 key share and so spans more than one segment.
func goHello(tb testing.TB) []byte {
	return captureHello(tb, &tls.Config{
		ServerName: "team-a.example.com",
		NextProtos: []string{"h2", "http/1.1"},
	})
}

// handshakeMessage strips the record layer from raw, independently of the
// code under test.
func handshakeMessage(tb testing.TB, raw []byte) []byte {
	tb.Helper()
	var msg []byte
	for len(raw) > 0 {
		if len(raw) < 5 || raw[0] != 22 {
			tb.Fatalf("not a handshake record: % x", raw[:min(len(raw), 5)])
		}
		n := int(raw[3])<<8 | int(raw[4])
		if len(raw) < 5+n {
			tb.Fatalf("truncated record")
		}
		msg = append(msg, raw[5:5+n]...)
		raw = raw[5+n:]
	}
	return msg
}

// reframe splits a handshake message into records whose payload sizes cycle
// through sizes, as a middlebox or a hostile client may legally do.
func reframe(msg []byte, sizes ...int) []byte {
	var out []byte
	for i := 0; len(msg) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

type ext struct {
	typ  uint16
	data []byte
}

// helloParts is a ClientHello body taken apart so tests can damage or edit
// one field of a real hello and reassemble the rest unchanged.
type helloParts struct {
	versionRandom []byte // legacy_version + random, 34 bytes
	sessionID     []byte
	suites        []byte
	compression   []byte
	noExtensions  bool
	exts          []ext
	trailing      []byte
}

func splitHello(tb testing.TB, msg []byte) *helloParts {
	tb.Helper()
	if msg[0] != 1 {
		tb.Fatalf("not a client_hello: type %d", msg[0])
	}
	s := cryptobyte.String(msg[4:])
	var p helloParts
	var sid, suites, comp, exts cryptobyte.String
	if !s.ReadBytes(&p.versionRandom, 34) || !s.ReadUint8LengthPrefixed(&sid) ||
		!s.ReadUint16LengthPrefixed(&suites) || !s.ReadUint8LengthPrefixed(&comp) ||
		!s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		tb.Fatal("cannot split hello")
	}
	p.sessionID, p.suites, p.compression = sid, suites, comp
	for !exts.Empty() {
		var e ext
		var data cryptobyte.String
		if !exts.ReadUint16(&e.typ) || !exts.ReadUint16LengthPrefixed(&data) {
			tb.Fatal("cannot split extensions")
		}
		e.data = data
		p.exts = append(p.exts, e)
	}
	return &p
}

func (p *helloParts) body() []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddBytes(p.versionRandom)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.sessionID) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.suites) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.compression) })
	if !p.noExtensions {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range p.exts {
				b.AddUint16(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
			}
		})
	}
	b.AddBytes(p.trailing)
	return b.BytesOrPanic()
}

// message wraps the body in a handshake header.
func (p *helloParts) message() []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddUint8(1)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.body()) })
	return b.BytesOrPanic()
}

// setExt replaces the extension of type typ, or appends it when absent.
func (p *helloParts) setExt(typ uint16, data []byte) {
	for i := range p.exts {
		if p.exts[i].typ == typ {
			p.exts[i].data = data
			return
		}
	}
	p.exts = append(p.exts, ext{typ, data})
}

// manyExts is n distinct extensions of types nexmux ignores (0xf000 up).
func manyExts(n int) []ext {
	out := make([]ext, n)
	for i := range out {
		out[i] = ext{uint16(0xf000 + i), nil}
	}
	return out
}

type sniEntry struct {
	typ  uint8
	name string
}

func sniExt(entries ...sniEntry) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range entries {
			b.AddUint8(e.typ)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(e.name)) })
		}
	})
	return b.BytesOrPanic()
}

func alpnExt(protos ...string) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, p := range protos {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
		}
	})
	return b.BytesOrPanic()
}

// withSNI is a real Go hello whose server_name has been rewritten to name,
// framed as one record; crypto/tls itself would never send such a name.
func withSNI(tb testing.TB, name string) []byte {
	tb.Helper()
	p := splitHello(tb, handshakeMessage(tb, goHello(tb)))
	p.setExt(0, sniExt(sniEntry{0, name}))
	return reframe(p.message(), maxRecordPayload)
}

// testCert is a self-signed certificate for the loopback handshakes.
var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "team-a.example.com"},
		DNSNames:              []string{"team-a.example.com"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
})

func mustCert(tb testing.TB) tls.Certificate {
	tb.Helper()
	c, err := testCert()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// countingReader records how much the code under test consumed.
type countingReader struct {
	r    *bytes.Reader
	read int
}

func newCountingReader(b []byte) *countingReader { return &countingReader{r: bytes.NewReader(b)} }

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}
