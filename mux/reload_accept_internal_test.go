package mux

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
)

// A reload that adds the peer's range between accept and routing does not
// split the connection between two configurations: it was accepted as its
// peer's own (charged to the peer), so routing reads no PROXY header for
// it either, as if it had come a moment earlier; connections accepted
// after the reload are the clients their headers name.
func TestReloadBetweenAcceptAndRouting(t *testing.T) {
	ca, _ := certs.NewCA("r")
	cert, _ := ca.IssueTLS("*.nexmux.test")
	cs, _ := NewCerts([]tls.Certificate{cert})
	tab, _ := route.Build(route.Spec{Routes: []string{"team-a.nexmux.test=team-a"}})
	logs := &testnet.Buffer{}
	s, err := New(Options{HandshakeTimeout: 5 * time.Second, MaxConnsPerClient: 1, MaxConns: 100,
		Logger:  slog.New(slog.NewTextHandler(logs, nil)),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })},
		&State{Table: tab, Certs: cs})
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeHTTPConns()
	defer s.Shutdown(context.Background())
	pp, _ := ProxyPolicy([]string{"127.0.0.1/32"})
	ln := testnet.Listen(t)
	client := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}
	dialAndGet := func() error {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		proxyproto.HeaderProxyFromAddrs(2, client, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 443}).WriteTo(c)
		tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: ca.Pool()})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(tc, "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil // connection kept open
	}
	// The accept loop, with the reload landing right after count.
	got := make(chan error, 1)
	go func() { got <- dialAndGet() }()
	raw, _ := ln.Accept()
	st := s.State()
	policy := st.peerPolicy(raw)
	c := s.count(raw, policy.namesClient()) // no range yet: 127.0.0.1's slot
	s.Update(&State{Table: tab, Certs: cs, ProxyProtocol: pp})
	s.routing.Add(1)
	s.track.AddConn(c)
	go func() { defer s.track.Done(); s.handle(c, source{state: st, policy: policy}) }()
	if err := <-got; err == nil {
		t.Fatal("a connection accepted before the range was added had its PROXY header read, charged to the balancer")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		active, slots := s.OpenCounts()
		if active == 0 && slots == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("limits hold %d places and %d client slots after it, want none", active, slots)
		}
	}
	go s.Serve(ln)
	// Accepted after the reload: the named client, counted once.
	if err := dialAndGet(); err != nil {
		t.Fatalf("after the reload: %v", err)
	}
	if err := dialAndGet(); err == nil {
		t.Errorf("203.0.113.7 has two connections with --max-conns-per-client 1")
	}
}

// A reload that removes the peer's range between accept and routing: the
// connection was accepted with its header trusted, and the reload revokes
// it as it would one already routed; its header never names a client for
// longer than that.
func TestReloadRemovingRangeBetweenAcceptAndRouting(t *testing.T) {
	ca, _ := certs.NewCA("r")
	cert, _ := ca.IssueTLS("*.nexmux.test")
	cs, _ := NewCerts([]tls.Certificate{cert})
	tab, _ := route.Build(route.Spec{Routes: []string{"team-a.nexmux.test=team-a"}})
	pp, _ := ProxyPolicy([]string{"127.0.0.1/32"})
	s, err := New(Options{HandshakeTimeout: 5 * time.Second,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })},
		&State{Table: tab, Certs: cs, ProxyProtocol: pp})
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeHTTPConns()
	defer s.Shutdown(context.Background())
	ln := testnet.Listen(t)
	got := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 443}).WriteTo(c)
		tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: ca.Pool()})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(tc)
		for range 2 {
			if _, err := io.WriteString(tc, "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
				got <- nil // revoked: written into a closed connection
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				got <- nil // revoked
				return
			}
			resp.Body.Close()
			if resp.Close {
				got <- nil // revoked after this request
				return
			}
		}
		got <- errors.New("two requests served on a connection whose peer is no longer trusted")
	}()
	raw, _ := ln.Accept()
	st := s.State()
	policy := st.peerPolicy(raw)
	c := s.count(raw, policy.namesClient())
	s.Update(&State{Table: tab, Certs: cs}) // the range is gone
	s.routing.Add(1)
	s.track.AddConn(c)
	go func() { defer s.track.Done(); s.handle(c, source{state: st, policy: policy}) }()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}
