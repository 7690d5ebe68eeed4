package daemon_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/testnet"
)

// A reload that removes a route, a passthrough route or a SOCKS5 user ends
// the live connections that depend on it; connections on routes that
// still exist keep working.
func TestReloadRevokesLiveConnections(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "nexmux.yaml")
	authFile := filepath.Join(dir, "socks.auth")
	write := func(f, s string) {
		if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfgFile, "route: [team-a.nexmux.test=team-a, team-b.nexmux.test=team-b]\npassthrough: [pt.nexmux.test="+echo.Addr().String()+"]\n")
	write(authFile, "ci:one\nops:two\n")
	cfg := teamRoutes()
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.Socks5AuthFile = authFile
	st := stack.Start(t, stack.Options{Config: cfg, ConfigFile: cfgFile})

	dial := func(sni string, protos ...string) *tls.Conn {
		c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: sni, RootCAs: st.Pool(), NextProtos: protos})
		if err != nil {
			t.Fatalf("%s: %v", sni, err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	get := func(c net.Conn, br *bufio.Reader, host string) *http.Response {
		io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	// Idle HTTP/1.1 keep-alive connections on a kept and a removed route.
	keep, gone := dial("team-a.nexmux.test", "http/1.1"), dial("team-b.nexmux.test", "http/1.1")
	kbr, gbr := bufio.NewReader(keep), bufio.NewReader(gone)
	get(keep, kbr, "team-a.nexmux.test")
	get(gone, gbr, "team-b.nexmux.test")
	// An HTTP/2 connection on the removed route.
	h2 := dial("team-b.nexmux.test", "h2")
	io.WriteString(h2, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	h2.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	// A passthrough stream.
	pt, err := net.Dial("tcp", st.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pt.Close()
	pt.SetDeadline(time.Now().Add(20 * time.Second))
	hello := testnet.ClientHello(t, &tls.Config{ServerName: "pt.nexmux.test"})
	pt.Write(hello)
	if _, err := io.ReadFull(pt, make([]byte, len(hello))); err != nil {
		t.Fatalf("passthrough echo: %v", err)
	}
	// SOCKS5 tunnels of a user to remove and of one to keep.
	tunnel := func(user, pw string) net.Conn {
		c, err := net.Dial("tcp", st.Daemon.Addr("socks5").String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		c.Write([]byte{5, 1, 2})
		io.ReadFull(c, make([]byte, 2))
		c.Write(append(append(append([]byte{1, byte(len(user))}, user...), byte(len(pw))), pw...))
		var r [2]byte
		if _, err := io.ReadFull(c, r[:]); err != nil || r[1] != 0 {
			t.Fatalf("login %s: %v %v", user, r, err)
		}
		host := "team-a.nexmux.test"
		c.Write(append(append([]byte{5, 1, 0, 3, byte(len(host))}, host...), 1, 187))
		var rep [10]byte
		if _, err := io.ReadFull(c, rep[:]); err != nil || rep[1] != 0 {
			t.Fatalf("connect %s: %v %v", user, rep, err)
		}
		tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("tunnel %s: %v", user, err)
		}
		return tc
	}
	ciTun, opsTun := tunnel("ci", "one"), tunnel("ops", "two")
	obr := bufio.NewReader(opsTun)
	get(opsTun, obr, "team-a.nexmux.test")

	write(cfgFile, "route: [team-a.nexmux.test=team-a]\n")
	write(authFile, "ci:one\n")
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}

	closed := func(what string, r io.Reader) {
		t.Helper()
		for {
			if _, err := r.Read(make([]byte, 512)); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("%s: still open after the reload", what)
				}
				return
			}
		}
	}
	closed("HTTP/1.1 connection on the removed route", gbr)
	closed("HTTP/2 connection on the removed route", h2)
	closed("passthrough stream of the removed route", pt)
	closed("SOCKS5 tunnel of the removed user", obr)

	// What still exists is untouched.
	if resp := get(keep, kbr, "team-a.nexmux.test"); resp.StatusCode != http.StatusUnauthorized || resp.Close {
		t.Errorf("kept route: %d close %v", resp.StatusCode, resp.Close)
	}
	cbr := bufio.NewReader(ciTun)
	if resp := get(ciTun, cbr, "team-a.nexmux.test"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("kept user's tunnel: %d", resp.StatusCode)
	}
}

// Removing a --proxy-protocol-from range ends the connections that range's
// load balancer brought in.
func TestReloadRevokesProxyProtocolRange(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(cfgFile, []byte("proxy-protocol-from: [127.0.0.0/8]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := stack.Start(t, stack.Options{Config: teamRoutes(), ConfigFile: cfgFile})
	raw, err := net.Dial("tcp", st.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(raw, "PROXY TCP4 10.1.2.3 127.0.0.1 1111 443\r\n")
	c := tls.Client(raw, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	if err := os.WriteFile(cfgFile, []byte("proxy-protocol-from: [10.0.0.0/8]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := br.ReadByte(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection of a distrusted load balancer still open after the reload")
			}
			return
		}
	}
}

// An HTTP/1.1 request in flight at Nexus when a reload revokes its
// connection gets its answer with "Connection: close": closed after the
// response without a word, the connection goes back to the client's pool
// and its next request (an upload's PATCH, which is not sent again) races
// the close.
func TestRevokedInFlightResponseSaysClose(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	writeFile(t, file, "route: [team-a.nexmux.test=team-a, team-b.nexmux.test=team-b]\n")
	st, release := startHeldNexus(t, stack.Options{ConfigFile: file})
	c := sendHeld(t, st)
	writeFile(t, file, "route: [team-a.nexmux.test=team-a]\n")
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("answer to the request in flight: %v", err)
	}
	resp.Body.Close()
	if !resp.Close {
		t.Errorf("answer to the request in flight when its route was removed: %s, Connection %q; want Connection: close", resp.Status, resp.Header.Get("Connection"))
	}
}

// An HTTP/1.1 request forwarded before --max-conn-age and answered after
// it gets "Connection: close", and the connection ends after it: the first
// response past the age is the last, as for a revoked connection
// (TestRevokedInFlightResponseSaysClose), not the next request's.
func TestAgedInFlightResponseSaysClose(t *testing.T) {
	const age = time.Second
	cfg := teamRoutes()
	cfg.MaxConnAge = age
	st, release := startHeldNexus(t, stack.Options{Config: cfg})
	dialed := time.Now()
	c := sendHeld(t, st)
	// The connection opened after dialed and before its request reached
	// Nexus: past reached+age it is surely older than age.
	reachedAt := time.Now()
	if reachedAt.Sub(dialed) >= age {
		t.Skip("the request reached Nexus only after --max-conn-age (a loaded machine): nothing to test")
	}
	time.Sleep(time.Until(reachedAt.Add(age + 50*time.Millisecond)))
	close(release)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("answer to the request in flight: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if !resp.Close {
		t.Errorf("answer written past --max-conn-age to a request forwarded before it: %s, Connection %q; want Connection: close", resp.Status, resp.Header.Get("Connection"))
	}
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection after the answer past --max-conn-age: read %v, want it closed", err)
	}
}

// heldStack is a stack whose Nexus holds a request for a "/held/" path
// until release is closed, once reached has been.
type heldStack struct {
	*stack.Stack
	reached chan struct{}
}

// startHeldNexus starts o's stack in front of a Nexus that holds the first
// "/held/" request until release is closed.
func startHeldNexus(t *testing.T, o stack.Options) (st heldStack, release chan struct{}) {
	st.reached, release = make(chan struct{}), make(chan struct{})
	o.Upstreams = func(nexusURL string) []string {
		target, _ := url.Parse(nexusURL)
		nexus := httputil.NewSingleHostReverseProxy(target)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/held/") {
				close(st.reached)
				<-release
			}
			nexus.ServeHTTP(w, r)
		}))
		t.Cleanup(front.Close)
		return []string{front.URL}
	}
	st.Stack = stack.Start(t, o)
	return st, release
}

// sendHeld sends a held request to team-b over HTTP/1.1 and returns once
// Nexus holds it; the connection has 10s for the rest of the test.
func sendHeld(t *testing.T, st heldStack) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "team-b.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /v2/held/app/tags/list HTTP/1.1\r\nHost: "+st.Host("team-b")+"\r\n\r\n")
	select {
	case <-st.reached:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached Nexus")
	}
	return c
}
