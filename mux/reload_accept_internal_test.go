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

// acceptRig is a Server with one route, whose connections a test accepts
// by hand, to land a reload between accept and routing.
type acceptRig struct {
	s  *Server
	ca *certs.CA
	st *State // without a PROXY range
	pp func(net.Addr) proxyproto.Policy
	ln net.Listener
}

func newAcceptRig(t *testing.T, opts Options, trusted bool) *acceptRig {
	t.Helper()
	r := &acceptRig{}
	var err error
	if r.ca, err = certs.NewCA("r"); err != nil {
		t.Fatal(err)
	}
	cert, err := r.ca.IssueTLS("*.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := NewCerts([]tls.Certificate{cert})
	tab, _ := route.Build(route.Spec{Routes: []string{"team-a.nexmux.test=team-a"}})
	r.st = &State{Table: tab, Certs: cs}
	r.pp, _ = ProxyPolicy([]string{"127.0.0.1/32"})
	first := *r.st
	if trusted {
		first.ProxyProtocol = r.pp
	}
	opts.HandshakeTimeout = 5 * time.Second
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
	if r.s, err = New(opts, &first); err != nil {
		t.Fatal(err)
	}
	go r.s.ServeHTTPConns()
	t.Cleanup(func() { r.s.Shutdown(context.Background()) })
	r.ln = testnet.Listen(t)
	return r
}

// dial connects as a balancer with a PROXY header naming 203.0.113.7 and
// starts TLS to team-a.
func (r *acceptRig) dial() (*tls.Conn, error) {
	c, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 443}).WriteTo(c)
	tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: r.ca.Pool()})
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	return tc, nil
}

// acceptAcross accepts one connection under the current state, applies
// next, then routes the connection, as the accept loop would have.
func (r *acceptRig) acceptAcross(next *State) {
	raw, _ := r.ln.Accept()
	st := r.s.State()
	policy := st.peerPolicy(raw)
	c := r.s.count(raw, policy.namesClient())
	r.s.Update(next)
	r.s.routing.Add(1)
	r.s.track.AddConn(c)
	go func() { defer r.s.track.Done(); r.s.handle(c, source{state: st, policy: policy}) }()
}

// A reload that adds the peer's range between accept and routing does not
// split the connection between two configurations: it was accepted as its
// peer's own (charged to the peer), so routing reads no PROXY header for
// it either, as if it had come a moment earlier; connections accepted
// after the reload are the clients their headers name.
func TestReloadBetweenAcceptAndRouting(t *testing.T) {
	r := newAcceptRig(t, Options{MaxConnsPerClient: 1, MaxConns: 100}, false)
	dialAndGet := func() error {
		tc, err := r.dial()
		if err != nil {
			return err
		}
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
	got := make(chan error, 1)
	go func() { got <- dialAndGet() }()
	trusting := *r.st
	trusting.ProxyProtocol = r.pp
	r.acceptAcross(&trusting)
	if err := <-got; err == nil {
		t.Fatal("a connection accepted before the range was added had its PROXY header read, charged to the balancer")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		active, slots := r.s.OpenCounts()
		if active == 0 && slots == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("limits hold %d places and %d client slots after it, want none", active, slots)
		}
	}
	go r.s.Serve(r.ln)
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
	r := newAcceptRig(t, Options{}, true)
	got := make(chan error, 1)
	go func() {
		tc, err := r.dial()
		if err != nil {
			got <- err
			return
		}
		defer tc.Close()
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
	r.acceptAcross(r.st) // the range is gone
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}
