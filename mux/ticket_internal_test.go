package mux

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/route"
)

// BenchmarkTicket is what binding a session to its name and certificate
// adds per ticket, beside crypto/tls's own EncryptTicket and DecryptTicket
// (what it does without WrapSession and UnwrapSession).
func BenchmarkTicket(b *testing.B) {
	ca, err := certs.NewCA("ticket bench CA")
	if err != nil {
		b.Fatal(err)
	}
	pair, err := ca.IssueTLS("*.bench.test")
	if err != nil {
		b.Fatal(err)
	}
	cs, err := NewCerts([]tls.Certificate{pair})
	if err != nil {
		b.Fatal(err)
	}
	tab, err := route.Build(route.Spec{Routes: []string{"r.bench.test=bench"}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Handler: http.NotFoundHandler(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		&State{Table: tab, Certs: cs})
	if err != nil {
		b.Fatal(err)
	}
	// A real session, from a handshake with the server's own config.
	c, sc := net.Pipe()
	cache := tls.NewLRUClientSessionCache(1)
	go func() {
		tc := tls.Server(sc, s.tlsConfig)
		_ = tc.Handshake()
		_, _ = tc.Write([]byte("x")) // the TLS 1.3 ticket goes before it
		tc.Close()
	}()
	cc := tls.Client(c, &tls.Config{ServerName: "r.bench.test", RootCAs: ca.Pool(), ClientSessionCache: cache})
	if _, err := cc.Read(make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	cc.Close()
	sess, ok := cache.Get("r.bench.test")
	if !ok {
		b.Fatal("no session")
	}
	ticket, _, err := sess.ResumptionState()
	if err != nil {
		b.Fatal(err)
	}
	conn := tls.ConnectionState{ServerName: "r.bench.test", Version: tls.VersionTLS13}
	plain, err := s.tlsConfig.DecryptTicket(ticket, conn)
	if err != nil || plain == nil {
		b.Fatal("crypto/tls cannot open the ticket")
	}
	if ss, err := s.unwrapSession(ticket, conn); err != nil || ss == nil {
		b.Fatal("nexmux does not resume its own ticket")
	}
	b.Run("unwrap/crypto-tls", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = s.tlsConfig.DecryptTicket(ticket, conn)
		}
	})
	b.Run("unwrap/nexmux", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ss, _ := s.unwrapSession(ticket, conn); ss == nil {
				b.Fatal("not resumed")
			}
		}
	})
	b.Run("wrap/crypto-tls", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ss := *plain
			ss.Extra = nil
			_, _ = s.tlsConfig.EncryptTicket(conn, &ss)
		}
	})
	b.Run("wrap/nexmux", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ss := *plain
			ss.Extra = nil
			_, _ = s.wrapSession(conn, &ss)
		}
	})
}
