//go:build linux

package daemon_test

// Legacy connector ports through real netfilter: nexmux listens inside a
// network namespace of its own, iptables/ip6tables REDIRECT the legacy ports
// to its listener, and registry clients push and pull from a second
// namespace (PREROUTING) and from the server namespace itself (OUTPUT), over
// IPv4 and IPv6. The Nexus fixture stays in the root namespace on 127.0.0.1:
// nexmux dials it from ordinary goroutines, as a sidecar would.
//
// Only documentation-range addresses are used: 192.0.2.0/24 and
// 2001:db8::/64 on a veth pair (with no link-local addresses), plus
// loopback. Every namespace is deleted when the test ends, also on failure.
//
// These tests need root, ip (iproute2) and iptables-restore/ip6tables-restore;
// without them they skip, unless NEXMUX_REQUIRE_NETNS is set (CI sets it), in
// which case they fail instead of passing vacuously.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/iptables"
	"github.com/nexmux/nexmux/internal/netns"
	"github.com/nexmux/nexmux/internal/testnet"
)

const (
	srvV4, cliV4 = "192.0.2.1", "192.0.2.2"
	srvV6, cliV6 = "2001:db8::1", "2001:db8::2"

	nsListenPort = 8443
	nsPullPort   = 8082 // --port 8082=team-a (group)
	nsPushPort   = 8083 // --port 8083=team-a-hosted
	nsNoRoute    = 8099 // redirected, but no --port route: SNI decides

	// legacyName is the host legacy clients put in the SNI: Nexus's old
	// name, for which nexmux has no route. On a port route the port
	// decides.
	legacyName = "nexus.nexmux.test"
)

// requireNetns skips (or, with NEXMUX_REQUIRE_NETNS set, fails) when the
// test cannot create namespaces and rules.
func requireNetns(t *testing.T, tools ...string) {
	t.Helper()
	testnet.RequireNetns(t, append([]string{"iptables-save", "ip6tables-save"}, tools...)...)
}

// sh runs a command, with stdin when given, and fails the test on error.
func sh(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := shErr(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func shErr(stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var nsSeq atomic.Int64

// newNetns creates a network namespace with lo up, deleted when t ends.
func newNetns(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), nsSeq.Add(1))
	_, _ = shErr("", "ip", "netns", "del", name) // left over by a killed run with the same pid
	sh(t, "", "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := shErr("", "ip", "netns", "del", name); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	sh(t, "", "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func nsPath(name string) string { return "/run/netns/" + name }

// netnsPair builds the server and client namespaces joined by a veth pair.
func netnsPair(t *testing.T) (srv, cli string) {
	t.Helper()
	srv, cli = newNetns(t, "nxs"), newNetns(t, "nxc")
	ip := func(ns string, args ...string) { t.Helper(); sh(t, "", "ip", append([]string{"-n", ns}, args...)...) }
	ip(srv, "link", "add", "nx0", "type", "veth", "peer", "name", "nx1", "netns", cli)
	// No link-local addresses: the test uses no address but these.
	ip(srv, "link", "set", "nx0", "addrgenmode", "none")
	ip(cli, "link", "set", "nx1", "addrgenmode", "none")
	ip(srv, "addr", "add", srvV4+"/24", "dev", "nx0")
	ip(srv, "addr", "add", srvV6+"/64", "dev", "nx0", "nodad")
	ip(cli, "addr", "add", cliV4+"/24", "dev", "nx1")
	ip(cli, "addr", "add", cliV6+"/64", "dev", "nx1", "nodad")
	ip(srv, "link", "set", "nx0", "up")
	ip(cli, "link", "set", "nx1", "up")
	return srv, cli
}

// nsListen is a daemon.Options.Listen binding inside namespace ns.
func nsListen(ns string) func(network, addr string) (net.Listener, error) {
	return func(network, addr string) (net.Listener, error) {
		var ln net.Listener
		err := netns.Do(nsPath(ns), func() (err error) {
			ln, err = net.Listen(network, addr)
			return err
		})
		return ln, err
	}
}

// nsDial dials from inside namespace ns ("" = this process's namespace).
func nsDial(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		if ns == "" {
			return d.DialContext(ctx, network, addr)
		}
		var c net.Conn
		err := netns.Do(nsPath(ns), func() (err error) {
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// httpsOnly refuses plain-HTTP requests. go-containerregistry treats
// 127.0.0.1 and [::1] registries as possibly insecure and races an http
// ping against the https one; refusing it keeps these clients on TLS, so
// the test cannot pass through the plain-HTTP path by accident.
type httpsOnly struct{ http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("test client: refusing %s://%s: these clients must use TLS", r.URL.Scheme, r.URL.Host)
	}
	return h.RoundTripper.RoundTrip(r)
}

// legacyClient is a registry client in namespace ns that sends the legacy
// name in the SNI whatever address it dials, and trusts the stack's CA.
func legacyClient(t *testing.T, st *stack.Stack, ns string) []remote.Option {
	tr := &http.Transport{
		DialContext:       nsDial(ns),
		TLSClientConfig:   &tls.Config{ServerName: legacyName, RootCAs: st.Pool()},
		ForceAttemptHTTP2: true,
		IdleConnTimeout:   30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return []remote.Option{
		remote.WithContext(ctxT(t)),
		remote.WithTransport(httpsOnly{tr}),
		remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}),
	}
}

// pushPullByPort pushes a random image through the push port of host and
// pulls it back through the pull port, then checks that the fixture saw
// both at the repositories the ports name, over TLS, from wantClient.
func pushPullByPort(t *testing.T, st *stack.Stack, opts []remote.Option, host string, pushPort, pullPort int, wantClient string) {
	t.Helper()
	pushAddr := net.JoinHostPort(host, strconv.Itoa(pushPort))
	pullAddr := net.JoinHostPort(host, strconv.Itoa(pullPort))
	st.Nexus.ResetRequests()

	img, err := random.Image(32<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, pushAddr+"/legacy/app:1"), img, opts...); err != nil {
		t.Fatalf("push %s/legacy/app:1: %v", pushAddr, err)
	}
	got, err := remote.Image(ref(t, pullAddr+"/legacy/app:1"), opts...)
	if err != nil {
		t.Fatalf("pull %s/legacy/app:1: %v", pullAddr, err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatalf("pull %s/legacy/app:1: content does not verify: %v", pullAddr, err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		t.Fatalf("pulled %s through %s, pushed %s through %s", gd, pullAddr, wd, pushAddr)
	}
	requireSaw(t, st, http.MethodPut, "/repository/team-a-hosted/v2/legacy/app/manifests/1", pushAddr, "https", wantClient)
	requireSaw(t, st, http.MethodGet, "/repository/team-a/v2/legacy/app/manifests/1", pullAddr, "https", wantClient)
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		requireSaw(t, st, http.MethodGet, "/repository/team-a/v2/legacy/app/blobs/"+d.String(), pullAddr, "https", wantClient)
	}
}

// requireSaw fails unless the fixture logged method path with the client's
// Host and the forwarding headers nexmux sets.
func requireSaw(t *testing.T, st *stack.Stack, method, path, host, proto, client string) {
	t.Helper()
	var seen []string
	for _, r := range st.Nexus.Requests() {
		if r.Method != method || r.Path != path {
			continue
		}
		if r.Host == host && r.Header.Get("X-Forwarded-Proto") == proto && r.Header.Get("X-Forwarded-For") == client && r.Status < 300 {
			return
		}
		seen = append(seen, fmt.Sprintf("Host %q proto %q for %q status %d", r.Host, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-For"), r.Status))
	}
	t.Fatalf("Nexus never saw %s %s from %s with Host %q over %s (matching path: %v)", method, path, client, host, proto, seen)
}

// dumpOnFailure logs the namespace's nat rules and nexmux's log when t
// fails.
func dumpOnFailure(t *testing.T, ns string, logs *logBuffer) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, tool := range []string{"iptables-save", "ip6tables-save"} {
			out, _ := shErr("", "ip", "netns", "exec", ns, tool, "-t", "nat")
			t.Logf("%s in %s:\n%s", tool, ns, out)
		}
		if logs != nil {
			t.Logf("nexmux log:\n%s", logs.String())
		}
	})
}

func TestNetnsLegacyPortsThroughIptables(t *testing.T) {
	requireNetns(t)
	srv, cli := netnsPair(t)

	// 8099 is redirected too, but has no --port route.
	rules, err := iptables.Rules{ListenPort: nsListenPort, Ports: []int{nsPullPort, nsPushPort, nsNoRoute}, Jumps: true}.Apply()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		sh(t, rules, "ip", "netns", "exec", srv, tool, "--noflush")
	}

	st, logs := legacyPortStack(t, srv)
	if a := st.Daemon.Addr("listen").(*net.TCPAddr); !a.IP.IsUnspecified() || a.IP.To4() != nil || a.Port != nsListenPort {
		t.Fatalf("nexmux listens on %s, want [::]:%d", a, nsListenPort)
	}

	clients := []struct {
		name, ns, host, client string
	}{
		{"remote/ipv4", cli, srvV4, cliV4},            // PREROUTING
		{"remote/ipv6", cli, srvV6, cliV6},            // PREROUTING
		{"local/ipv4", srv, "127.0.0.1", "127.0.0.1"}, // OUTPUT
		{"local/ipv6", srv, "::1", "::1"},             // OUTPUT
	}
	for _, c := range clients {
		t.Run("push-pull/"+c.name, func(t *testing.T) {
			pushPullByPort(t, st, legacyClient(t, st, c.ns), c.host, nsPushPort, nsPullPort, c.client)
		})
	}

	// A port route serves plain HTTP too (a TLS-ending load balancer in
	// front of an old connector); the challenge names the client's URL.
	for _, host := range []string{srvV4, srvV6} {
		t.Run("plain-http/"+host, func(t *testing.T) {
			st.Nexus.ResetRequests()
			addr := net.JoinHostPort(host, strconv.Itoa(nsPullPort))
			resp := rawGet(t, cli, addr, "/v2/")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("GET http://%s/v2/: %d, want 401", addr, resp.StatusCode)
			}
			realm := `realm="http://` + addr + `/v2/token"`
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, realm) {
				t.Fatalf("challenge %q, want %s", got, realm)
			}
			requireSawStatus(t, st, http.MethodGet, "/repository/team-a/v2/", addr, "http", http.StatusUnauthorized)
		})
	}

	// The listen port itself is not a port route: a client reaching it
	// directly (no REDIRECT, SO_ORIGINAL_DST gives the listen port) is
	// routed by SNI, and the legacy name has no route.
	for _, host := range []string{srvV4, srvV6} {
		addr := net.JoinHostPort(host, strconv.Itoa(nsListenPort))
		t.Run("direct-listen-port/"+host, func(t *testing.T) {
			err := tlsHandshake(t, cli, addr, legacyName, st)
			if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
				t.Fatalf("SNI %s on %s: %v, want a tls unrecognized_name alert", legacyName, addr, err)
			}
			waitLog(t, logs, "reason=unknown_sni", "sni="+legacyName)
			for _, team := range []string{"team-a", "team-b"} {
				st.Nexus.ResetRequests()
				resp := sniGet(t, st, cli, addr, team+"."+stack.Domain, "/v2/")
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("SNI %s on %s: GET /v2/: %d, want 401", team, addr, resp.StatusCode)
				}
				realm := `realm="https://` + team + "." + stack.Domain + ":" + strconv.Itoa(nsListenPort) + `/v2/token"`
				if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, realm) {
					t.Fatalf("SNI %s: challenge %q, want %s", team, got, realm)
				}
				requireSawStatus(t, st, http.MethodGet, "/repository/"+team+"/v2/", team+"."+stack.Domain+":"+strconv.Itoa(nsListenPort), "https", http.StatusUnauthorized)
			}
		})
	}

	// A redirected port without a --port route (like 443 -> 8443, so
	// nexmux runs unprivileged) is the fan-in port itself: SNI decides, and
	// it is never mistaken for some other port's repository.
	for _, host := range []string{srvV4, srvV6} {
		addr := net.JoinHostPort(host, strconv.Itoa(nsNoRoute))
		t.Run("redirected-port-without-route/"+host, func(t *testing.T) {
			err := tlsHandshake(t, cli, addr, legacyName, st)
			if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
				t.Fatalf("SNI %s on %s: %v, want a tls unrecognized_name alert", legacyName, addr, err)
			}
			st.Nexus.ResetRequests()
			resp := sniGet(t, st, cli, addr, "team-b."+stack.Domain, "/v2/")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("SNI team-b on %s: %d, want 401", addr, resp.StatusCode)
			}
			requireSawStatus(t, st, http.MethodGet, "/repository/team-b/v2/", "team-b."+stack.Domain+":"+strconv.Itoa(nsNoRoute), "https", http.StatusUnauthorized)
		})
	}
}

// requireSawStatus fails unless the fixture logged method path with this
// Host, forwarded proto and status.
func requireSawStatus(t *testing.T, st *stack.Stack, method, path, host, proto string, status int) {
	t.Helper()
	for _, r := range st.Nexus.Requests() {
		if r.Method == method && r.Path == path && r.Host == host && r.Header.Get("X-Forwarded-Proto") == proto && r.Status == status {
			return
		}
	}
	t.Fatalf("Nexus never saw %s %s (Host %q, %s, status %d); saw %+v", method, path, host, proto, status, paths(st.Nexus.Requests()))
}

func paths(rs []fixtures.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s (Host %s) %d", r.Method, r.Path, r.Host, r.Status))
	}
	return out
}

// rawGet sends one plain-HTTP request over a fresh TCP connection from ns.
func rawGet(t *testing.T, ns, addr, path string) *http.Response {
	t.Helper()
	c, err := nsDial(ns)(ctxT(t), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: legacy-test\r\nConnection: close\r\n\r\n", path, addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("plain GET http://%s%s: %v", addr, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// tlsHandshake connects from ns to addr with serverName in the SNI.
func tlsHandshake(t *testing.T, ns, addr, serverName string, st *stack.Stack) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctxT(t), 15*time.Second)
	defer cancel()
	raw, err := nsDial(ns)(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer raw.Close()
	c := tls.Client(raw, &tls.Config{ServerName: serverName, RootCAs: st.Pool()})
	return c.HandshakeContext(ctx)
}

// sniGet GETs path over TLS with serverName as SNI and Host, connecting from
// ns to addr.
func sniGet(t *testing.T, st *stack.Stack, ns, addr, serverName, path string) *http.Response {
	t.Helper()
	dial := nsDial(ns)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dial(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: st.Pool()},
	}
	defer tr.CloseIdleConnections()
	_, port, _ := net.SplitHostPort(addr)
	resp, err := (&http.Client{Transport: tr}).Get("https://" + net.JoinHostPort(serverName, port) + path)
	if err != nil {
		t.Fatalf("GET https://%s:%s%s via %s: %v", serverName, port, path, addr, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestBindPortsWithoutIptables: where iptables is not allowed, nexmux binds
// the legacy ports itself (--bind-ports) and routes by the listener's port.
func TestBindPortsWithoutIptables(t *testing.T) {
	pull, push := freePort(t), freePort(t)
	cfg := teamRoutes()
	cfg.Listen = "127.0.0.1:0"
	cfg.BindPorts = true
	cfg.Port = []string{fmt.Sprintf("%d=team-a", pull), fmt.Sprintf("%d=team-a-hosted", push)}
	st := stack.Start(t, stack.Options{Config: cfg})
	for _, p := range []int{pull, push} {
		a, ok := st.Daemon.Addr("port:" + strconv.Itoa(p)).(*net.TCPAddr)
		if !ok || a.Port != p || !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Fatalf("port %d not bound by nexmux on 127.0.0.1 (addr %v)", p, st.Daemon.Addr("port:"+strconv.Itoa(p)))
		}
	}
	pushPullByPort(t, st, legacyClient(t, st, ""), "127.0.0.1", push, pull, "127.0.0.1")
}

// TestNetnsIptablesScript checks scripts/nexmux-iptables.sh in a throwaway
// namespace: apply is idempotent, re-applying replaces the ports, delete
// removes exactly nexmux's rules, for both families.
func TestNetnsIptablesScript(t *testing.T) {
	requireNetns(t, "bash", "go")
	script, err := filepath.Abs("../../scripts/nexmux-iptables.sh")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "nexmux")
	sh(t, "", "go", "build", "-o", bin, "../../cmd/nexmux")
	ns := newNetns(t, "nxi")
	dumpOnFailure(t, ns, nil)

	// Someone else's rules, which must survive.
	foreign := []string{"-A PREROUTING -p tcp --dport 9999 -j REDIRECT --to-ports 9998"}
	for _, tool := range []string{"iptables", "ip6tables"} {
		sh(t, "", "ip", append([]string{"netns", "exec", ns, tool, "-t", "nat"}, strings.Fields(foreign[0])...)...)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "bash", script}, args...)...)
		cmd.Env = append(os.Environ(), "NEXMUX="+bin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nexmux-iptables.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// check compares the nat table with what nexmux should own.
	check := func(chain string, ports []int, present bool) {
		t.Helper()
		for _, tool := range []string{"iptables-save", "ip6tables-save"} {
			out := sh(t, "", "ip", "netns", "exec", ns, tool, "-t", "nat")
			var ours []string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "nexmux") || strings.Contains(l, chain) {
					ours = append(ours, l)
				}
			}
			want := 0
			if present {
				want = 1 + 2 + len(ports) // chain, two jumps, one rule per port
			}
			if len(ours) != want {
				t.Fatalf("%s: %d nexmux lines, want %d:\n%s", tool, len(ours), want, out)
			}
			if !present {
				if !strings.Contains(out, "--dport 9999 -j REDIRECT --to-ports 9998") {
					t.Fatalf("%s: the foreign rule is gone:\n%s", tool, out)
				}
				continue
			}
			count := func(parts ...string) int {
				n := 0
				for _, l := range ours {
					ok := true
					for _, p := range parts {
						ok = ok && strings.Contains(l, p)
					}
					if ok {
						n++
					}
				}
				return n
			}
			if count(":"+chain+" ") != 1 || count("-A PREROUTING ", "--dst-type LOCAL", "-j "+chain) != 1 || count("-A OUTPUT ", "--dst-type LOCAL", "-j "+chain) != 1 {
				t.Fatalf("%s: want chain %s declared once and one PREROUTING and one OUTPUT jump:\n%s", tool, chain, out)
			}
			for _, p := range ports {
				if count("-A "+chain+" ", "--dport "+strconv.Itoa(p)+" ", "--comment nexmux", "REDIRECT --to-ports 8443") != 1 {
					t.Fatalf("%s: want one REDIRECT of %d to 8443:\n%s", tool, p, out)
				}
			}
			if !strings.Contains(out, "--dport 9999 -j REDIRECT --to-ports 9998") {
				t.Fatalf("%s: the foreign rule is gone:\n%s", tool, out)
			}
		}
	}

	flags := []string{"--listen", ":8443", "--port", "8082=team-a", "--port", "8083=team-a-hosted"}
	run(append([]string{"apply"}, flags...)...)
	check("NEXMUX", []int{8082, 8083}, true)
	run(append([]string{"apply"}, flags...)...)
	check("NEXMUX", []int{8082, 8083}, true)
	// Re-applying with other ports replaces the chain's content.
	run("apply", "--listen", ":8443", "--port", "8084=team-b")
	check("NEXMUX", []int{8084}, true)
	run("delete")
	check("NEXMUX", nil, false)
	if out := run("delete"); !strings.Contains(out, "nothing to delete") {
		t.Fatalf("second delete: %s", out)
	}
	check("NEXMUX", nil, false)

	// --chain is passed through; two instances keep separate chains.
	run(append([]string{"apply", "--chain", "NEXMUX_B"}, flags...)...)
	run(append([]string{"apply", "--chain=NEXMUX_B"}, flags...)...)
	check("NEXMUX_B", []int{8082, 8083}, true)
	run("delete", "--chain", "NEXMUX_B")
	check("NEXMUX_B", nil, false)

	// A bad configuration changes nothing and fails.
	cmd := exec.Command("ip", "netns", "exec", ns, "bash", script, "apply", "--port", "nope")
	cmd.Env = append(os.Environ(), "NEXMUX="+bin)
	var ee *exec.ExitError
	if out, err := cmd.CombinedOutput(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("apply with an invalid --port: %v (want exit status 2)\n%s", err, out)
	}
	check("NEXMUX", nil, false)
}

// legacyPortStack starts nexmux in namespace srv on one dual-stack socket
// (IPv4 clients arrive v4-mapped) at nsListenPort, with team-a on
// nsPullPort and team-a-hosted on nsPushPort as --port routes; its log
// (debug) is dumped with srv's rules if t fails.
func legacyPortStack(t *testing.T, srv string) (*stack.Stack, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	var lw io.Writer = logs
	if os.Getenv("NEXMUX_TEST_LOG") != "" {
		lw = io.MultiWriter(logs, os.Stderr)
	}
	dumpOnFailure(t, srv, logs)
	cfg := teamRoutes()
	cfg.Listen = "[::]:" + strconv.Itoa(nsListenPort)
	cfg.Port = []string{fmt.Sprintf("%d=team-a", nsPullPort), fmt.Sprintf("%d=team-a-hosted", nsPushPort)}
	st := stack.Start(t, stack.Options{
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Listen: nsListen(srv),
	})
	return st, logs
}
