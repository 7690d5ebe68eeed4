package daemon_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/testnet"
)

// ipv6Relay listens on [::1] and relays each connection to addr, so a
// fixture the stack runs on 127.0.0.1 is reached at an IPv6 address. It
// skips the test where the host has no IPv6 loopback.
func ipv6Relay(t *testing.T, addr string) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this host: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	testnet.Serve(ln, func(c net.Conn) {
		up, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer up.Close()
		go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
		_, _ = io.Copy(c, up)
	})
	return ln.Addr().(*net.TCPAddr)
}

// loopbackName is the name of the loopback interface ("lo" on Linux).
func loopbackName(t *testing.T) string {
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			return ifc.Name
		}
	}
	t.Skip("no loopback interface")
	return ""
}

// TestUpstreamAtZonedIPv6Address: an --upstream node at an IPv6 address
// with a zone (a link-local Nexus, http://[fe80::1%25eth0]:8081, written
// as RFC 6874 has it in a URL) is reached like any other node. Here the
// zone names the loopback interface on [::1], the same URL form on any
// host with IPv6 loopback.
func TestUpstreamAtZonedIPv6Address(t *testing.T) {
	lo := loopbackName(t)
	st := stack.Start(t, stack.Options{
		Config: teamRoutes(),
		Upstreams: func(nexusURL string) []string {
			u, err := url.Parse(nexusURL)
			if err != nil {
				t.Fatal(err)
			}
			relay := ipv6Relay(t, u.Host)
			return []string{"http://[::1%25" + lo + "]:" + itoa(relay.Port)}
		},
	})
	where := st.Host("team-a-push") + "/app:1"
	img := pushImage(t, st, where)
	pullVerify(t, st, st.Host("team-a")+"/app:1", img)
}

// TestIPv6LoopbackWithoutSNI: a client that names nexmux by an IPv6
// literal (https://[::1]:PORT, so it sends no SNI) gets --default-route, a
// certificate with that IP SAN, and URLs in bracketed form (realm,
// upload Location), with Nexus itself at an IPv6 address; a push and pull
// with go-containerregistry go through, and a Host naming another route
// on that connection is 421.
func TestIPv6LoopbackWithoutSNI(t *testing.T) {
	ca, err := certs.NewCA("ipv6 test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("*.nexmux.test", "::1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := pair.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	cfg := teamRoutes()
	cfg.Listen, cfg.DefaultRoute = "[::1]:0", "pull:team-a,push:team-a-hosted"
	cfg.Cert, cfg.Key = []string{crt}, []string{key}
	st := stack.Start(t, stack.Options{Config: cfg, Upstreams: func(nexusURL string) []string {
		u, err := url.Parse(nexusURL)
		if err != nil {
			t.Fatal(err)
		}
		return []string{"http://" + ipv6Relay(t, u.Host).String()}
	}})
	host := "[::1]:" + itoa(st.Port)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, host, path string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, "https://[::1]:"+itoa(st.Port)+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s (Host %s): %v", method, path, host, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/v2/", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := `realm="https://` + host + `/v2/token"`; resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Www-Authenticate"), want) {
		t.Errorf("GET /v2/: %d %q, want 401 with %s", resp.StatusCode, resp.Header.Get("Www-Authenticate"), want)
	}
	resp = do(http.MethodPost, host, "/v2/v6/app/blobs/uploads/")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "https://"+host+"/v2/v6/app/blobs/uploads/") {
		t.Errorf("POST upload: %d Location %q, want 202 at https://%s/v2/v6/app/blobs/uploads/...", resp.StatusCode, loc, host)
	}
	if resp := do(http.MethodGet, st.Host("team-b"), "/v2/"); resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host %s without SNI: %d, want 421", st.Host("team-b"), resp.StatusCode)
	}
	opts := []remote.Option{remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}), remote.WithContext(ctxT(t))}
	pushPull(t, host+"/v6/app:1", host+"/v6/app:1", opts...)
}

// TestPerClientRefusalNamesTheIPv6Prefix: with --per-client-ipv6-prefix 64
// a connection refused by --max-conns-per-client may come from an address
// with no other connection open: the line must name the /64 that was
// counted (as the SOCKS5 login throttle's does), or it reads as false.
func TestPerClientRefusalNamesTheIPv6Prefix(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxConns, cfg.MaxConnsPerClient = 40, 2
	cfg.ProxyProtocolFrom = []string{"127.0.0.1/32"}
	cfg.PerClientIPv6Prefix = 64
	st, logs := logStack(t, cfg)
	cs := silentConns(t, st.Addr, 3)
	for i, c := range cs {
		if _, err := fmt.Fprintf(c, "PROXY TCP6 2001:db8:1:2::%x 2001:db8::ffff %d 443\r\n", i+1, 40000+i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the third connection from the /64 refused", func() bool { return strings.Contains(logs.String(), "reason=max_conns_per_client") })
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "reason=max_conns_per_client") && !strings.Contains(line, "prefix=2001:db8:1:2::/64") {
			t.Errorf("refusal line names no prefix=2001:db8:1:2::/64: %s", line)
		}
	}
}

// TestRequestRefusalNamesTheIPv6Prefix: with --per-client-ipv6-prefix 64
// a request refused by --max-requests-per-client (429) may be the first of
// its address: the answer and the access line name the /64 counted.
func TestRequestRefusalNamesTheIPv6Prefix(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxRequestsPerClient = 1
	cfg.ProxyProtocolFrom = []string{"127.0.0.1/32"}
	cfg.PerClientIPv6Prefix = 64
	st, logs := logStackWith(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]
	node.SetBlackhole(true)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait(); node.SetBlackhole(false) }()
	get := func(ctx context.Context, src string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+st.Host("team-a")+"/v2/app/manifests/1", nil)
		req.SetBasicAuth(stack.User, stack.Password)
		return (&http.Client{Transport: transportBehind(st, src)}).Do(req)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if resp, err := get(ctx, "2001:db8:1:2::a"); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the first request held at Nexus", func() bool { return len(node.Requests()) == 1 })
	resp, err := get(context.Background(), "2001:db8:1:2::b")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "2001:db8:1:2::/64") {
		t.Errorf("second request from the /64: %d %s, want 429 naming 2001:db8:1:2::/64", resp.StatusCode, body)
	}
	waitFor(t, "the 429 logged", func() bool { return strings.Contains(logs.String(), "status=429") })
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "status=429") && !strings.Contains(line, "2001:db8:1:2::/64") {
			t.Errorf("access line of the 429 names no 2001:db8:1:2::/64: %s", line)
		}
	}
}
