package mux_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/route"
)

// BenchmarkHandshake is one full connection through the listener: accept,
// peek the ClientHello, route by SNI, full TLS 1.3 handshake (X25519,
// ECDSA P-256, no resumption), close. The client runs in the same process,
// so ns/op and allocs/op include its half; -cpuprofile separates the two
// (crypto/tls.(*Conn).serverHandshake vs clientHandshake). With 10,000
// routes every connection names another route: the lookup must cost what
// it costs with one.
func BenchmarkHandshake(b *testing.B) {
	ca, cs := benchCerts(b)
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			routes := make([]string, n)
			hosts := make([]string, n)
			for i := range routes {
				hosts[i] = fmt.Sprintf("r%05d.bench.test", i)
				routes[i] = hosts[i] + "=bench"
			}
			tab, err := route.Build(route.Spec{Routes: routes})
			if err != nil {
				b.Fatal(err)
			}
			addr := serveBench(b, tab, cs)
			cfgs := make([]*tls.Config, n)
			for i, h := range hosts {
				cfgs[i] = &tls.Config{
					ServerName: h, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13,
					CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"},
				}
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				c, err := tls.Dial("tcp", addr, cfgs[i%n])
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
				i++
			}
		})
	}
}

// BenchmarkResumedHandshake is BenchmarkHandshake resuming a session (the
// bench's resumed-handshake row: a TLS 1.3 PSK with a fresh X25519 share,
// what Go's client offers; and a TLS 1.2 ticket): every connection must
// resume.
func BenchmarkResumedHandshake(b *testing.B) {
	ca, cs := benchCerts(b)
	tab, err := route.Build(route.Spec{Routes: []string{"r.bench.test=bench"}})
	if err != nil {
		b.Fatal(err)
	}
	addr := serveBench(b, tab, cs)
	for _, v := range []struct {
		name string
		v    uint16
	}{{"tls13", tls.VersionTLS13}, {"tls12", tls.VersionTLS12}} {
		b.Run(v.name, func(b *testing.B) {
			cfg := &tls.Config{
				ServerName: "r.bench.test", RootCAs: ca.Pool(), MinVersion: v.v, MaxVersion: v.v,
				CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"},
				ClientSessionCache: tls.NewLRUClientSessionCache(1),
			}
			// The first connection gets the ticket: TLS 1.3 sends it after
			// the handshake, read with the answer to a request.
			c, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: r.bench.test\r\n\r\n"); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Read(make([]byte, 512)); err != nil {
				b.Fatal(err)
			}
			c.Close()
			b.ReportAllocs()
			for b.Loop() {
				c, err := tls.Dial("tcp", addr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				if !c.ConnectionState().DidResume {
					b.Fatal("did not resume")
				}
				c.Close()
			}
		})
	}
}

// serveBench serves tab and cs on a loopback listener until b ends, with
// a handler that answers 404; it returns the listener's address.
func serveBench(b *testing.B, tab *route.Table, cs *mux.Certs) string {
	b.Helper()
	srv, err := mux.New(mux.Options{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: http.NotFoundHandler(),
	}, &mux.State{Table: tab, Certs: cs})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	go func() { defer wg.Done(); _ = srv.ServeHTTPConns() }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		wg.Wait()
	})
	return ln.Addr().String()
}

// benchCerts is a CA and a certificate set of one *.bench.test pair it
// issued.
func benchCerts(b *testing.B) (*certs.CA, *mux.Certs) {
	b.Helper()
	ca, err := certs.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.IssueTLS("*.bench.test")
	if err != nil {
		b.Fatal(err)
	}
	cs, err := mux.NewCerts([]tls.Certificate{cert})
	if err != nil {
		b.Fatal(err)
	}
	return ca, cs
}
