package mux_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/route"
)

// muxConfig is what a test server routes. team-a.nexmux.test always
// terminates TLS; the handler answers "<client> <sni> <tls>", with the
// route's key in X-Route and whether a port chose it in X-By-Port.
type muxConfig struct {
	proxyFrom         []string
	passthrough       string   // backend of pt.nexmux.test, when set
	routes            []string // more HOST=REPO routes
	ppOut             byte     // PROXY version sent to the passthrough backend
	ports             []string
	defaultRoute      string
	handshakeTimeout  time.Duration // default 5 s
	maxConns          int
	maxConnsPerClient int
	cert              *tls.Certificate  // instead of the CA's ECDSA *.nexmux.test
	certs             []tls.Certificate // instead of either: every pair, in order
	passthroughIdle   time.Duration
	portTLSOnly       bool
	maxHeaderBytes    int
	idleRelease       time.Duration
	idleTimeout       time.Duration
	headerTimeout     time.Duration
	// listener, when set, wraps the TLS listener (to see the accepted
	// sockets).
	listener    func(net.Listener) net.Listener
	sendTimeout time.Duration
	// listen, when set, opens the TLS listener instead of 127.0.0.1:0
	// (in a network namespace of the test's own).
	listen func() (net.Listener, error)
	// debugLog logs at debug level too (net/http's own lines).
	debugLog bool
}

// netHTTPShapedBody is exactly what net/http writes for a request it
// cannot parse (conn.serve), with a detail.
const netHTTPShapedBody = "HTTP/1.1 400 Bad Request: gotcha\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: gotcha"

// muxServer is a mux.Server serving on loopback.
type muxServer struct {
	addr    string
	srv     *mux.Server
	ca      *certs.CA
	logs    *testnet.Buffer
	refused *counter
	routed  *counter      // route keys given to Options.Routed
	gone    chan bool     // /until-gone: whether the request saw its client go
	begun   chan struct{} // /until-gone: a request reached the handler
	wg      *sync.WaitGroup
}

// counter counts the reasons given to Options.Refused.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[reason]++
}

func (c *counter) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[reason]
}

func startMux(t *testing.T, proxyFrom []string, passthrough string, ppOut byte) *muxServer {
	t.Helper()
	return startMuxWith(t, muxConfig{proxyFrom: proxyFrom, passthrough: passthrough, ppOut: ppOut})
}

func startMuxWith(t testing.TB, mc muxConfig) *muxServer {
	t.Helper()
	ca, err := certs.NewCA("mux test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueTLS("*.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	if mc.cert != nil {
		cert = *mc.cert
	}
	pairs := []tls.Certificate{cert}
	if mc.certs != nil {
		pairs = mc.certs
	}
	cs, err := mux.NewCerts(pairs)
	if err != nil {
		t.Fatal(err)
	}
	spec := route.Spec{Routes: append([]string{"team-a.nexmux.test=team-a"}, mc.routes...), Ports: mc.ports, Default: mc.defaultRoute}
	if mc.passthrough != "" {
		spec.Passthrough = []string{"pt.nexmux.test=" + mc.passthrough}
	}
	tab, err := route.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if mc.handshakeTimeout == 0 {
		mc.handshakeTimeout = 5 * time.Second
	}
	logs := &testnet.Buffer{}
	refused := &counter{n: map[string]int{}}
	routed := &counter{n: map[string]int{}}
	gone := make(chan bool, 8)
	begun := make(chan struct{}, 8)
	opts := mux.Options{
		HandshakeTimeout:       mc.handshakeTimeout,
		Logger:                 slog.New(slog.NewTextHandler(logs, logOptions(mc.debugLog))),
		Refused:                refused.add,
		Routed:                 func(rt *route.Route) { routed.add(rt.Key) },
		MaxConns:               mc.maxConns,
		MaxConnsPerClient:      mc.maxConnsPerClient,
		PassthroughIdleTimeout: mc.passthroughIdle,
		PortTLSOnly:            mc.portTLSOnly,
		MaxHeaderBytes:         mc.maxHeaderBytes,
		IdleRelease:            mc.idleRelease,
		IdleTimeout:            mc.idleTimeout,
		HeaderTimeout:          mc.headerTimeout,
		SendTimeout:            mc.sendTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ci := l7.FromContext(r.Context())
			if r.TLS != nil {
				w.Header().Set("X-Request-TLS", r.TLS.ServerName)
			}
			if r.URL.Path == "/plain-error" {
				// A handler's own plain-text 400 is the handler's answer,
				// never rewritten like net/http's.
				w.Header().Set("Connection", "close")
				http.Error(w, "400 Bad Request", http.StatusBadRequest)
				return
			}
			if r.URL.Path == "/net-http-shaped-body" {
				// A body (a blob a client pushed, say) whose last write
				// is, byte for byte, one of net/http's own answers.
				w.Header().Set("Content-Length", fmt.Sprint(len("blob:")+len(netHTTPShapedBody)))
				io.WriteString(w, "blob:")
				w.(http.Flusher).Flush()
				io.WriteString(w, netHTTPShapedBody)
				return
			}
			if r.URL.Path == "/sends" {
				// Whether the HTTP stage can set --send-timeout below
				// TLS (l7.ConnInfo.Sends).
				fmt.Fprint(w, ci.Sends != nil)
				return
			}
			if r.URL.Path == "/slow" {
				time.Sleep(200 * time.Millisecond)
			}
			if r.URL.Path == "/until-gone" {
				// Holds the request until its client goes away (as a
				// slow Nexus would) and says whether net/http noticed.
				begun <- struct{}{}
				select {
				case <-r.Context().Done():
					gone <- true
				case <-time.After(10 * time.Second):
					gone <- false
				}
				return
			}
			w.Header().Set("X-Method", r.Method)
			w.Header().Set("X-Path", r.URL.Path)
			w.Header().Set("X-Route", ci.Route.Key)
			w.Header().Set("X-By-Port", fmt.Sprint(ci.ByPort))
			fmt.Fprintf(w, "%s %s %v", ci.Client, ci.ServerName, ci.TLS)
		}),
	}
	state := &mux.State{Table: tab, Certs: cs, PassthroughProxyHeader: mc.ppOut}
	if mc.proxyFrom != nil {
		if state.ProxyProtocol, err = mux.ProxyPolicy(mc.proxyFrom); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := mux.New(opts, state)
	if err != nil {
		t.Fatal(err)
	}
	listen := mc.listen
	if listen == nil {
		listen = func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
	}
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	if mc.listener != nil {
		ln = mc.listener(ln)
	}
	m := &muxServer{addr: ln.Addr().String(), srv: srv, ca: ca, logs: logs, refused: refused, routed: routed, gone: gone, begun: begun, wg: &sync.WaitGroup{}}
	m.goServe(func() error { return srv.Serve(ln) })
	m.goServe(srv.ServeHTTPConns)
	t.Cleanup(func() {
		m.shutdown()
		if t.Failed() {
			t.Logf("mux log:\n%s", logs.String())
		}
	})
	return m
}

func logOptions(debug bool) *slog.HandlerOptions {
	if debug {
		return &slog.HandlerOptions{Level: slog.LevelDebug}
	}
	return nil
}

// goServe runs f until Shutdown; shutdown waits for it.
func (m *muxServer) goServe(f func() error) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_ = f()
	}()
}

func (m *muxServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
	m.wg.Wait()
}

// eventually polls check for 10 s; it fails the test with check's last
// description of what it saw unless check reports done by then.
func eventually(t *testing.T, check func() (done bool, saw string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		done, saw := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(saw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tlsConfig trusts the server's CA and names host.
func (m *muxServer) tlsConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, RootCAs: m.ca.Pool()}
}

// waitRefusal waits until the server has logged the refusal of client
// (its address) exactly once, with reason, and counted it.
func (m *muxServer) waitRefusal(t *testing.T, client, reason string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var lines []string
		for _, l := range strings.Split(m.logs.String(), "\n") {
			if strings.Contains(l, "client="+client+" ") {
				lines = append(lines, l)
			}
		}
		if len(lines) == 1 && strings.Contains(lines[0], "reason="+reason) && m.refused.get(reason) > 0 {
			return
		}
		if len(lines) > 1 || time.Now().After(deadline) {
			t.Fatalf("log lines for %s: %q, %d counted; want one with reason=%s", client, lines, m.refused.get(reason), reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// h1Dials are the two kinds of HTTP/1 connection: TLS terminated here, and
// plain HTTP on a port route (8082; the server needs a route for it).
// Connections close when the test ends.
func h1Dials(t *testing.T, m *muxServer) []struct {
	name string
	dial func(t *testing.T) net.Conn
} {
	portLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(portLn, 8082) })
	return []struct {
		name string
		dial func(t *testing.T) net.Conn
	}{
		{"tls", func(t *testing.T) net.Conn { return m.dialH1TLS(t) }},
		{"plain port route", func(t *testing.T) net.Conn {
			c, err := net.Dial("tcp", portLn.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}},
	}
}

// dialH1TLS dials team-a.nexmux.test offering only HTTP/1.1; the
// connection closes when the test ends.
func (m *muxServer) dialH1TLS(t *testing.T) net.Conn {
	t.Helper()
	cfg := m.tlsConfig("team-a.nexmux.test")
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", m.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
