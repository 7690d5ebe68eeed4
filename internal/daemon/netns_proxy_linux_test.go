package daemon_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/iptables"
)

// A load balancer in the client namespace speaks PROXY protocol to a legacy
// port that iptables redirects to nexmux's listener: the port route comes
// from SO_ORIGINAL_DST on the socket under the PROXY reader, the client
// address from the header.
func TestNetnsRedirectedPortBehindProxyProtocol(t *testing.T) {
	requireNetns(t)
	srv, cli := netnsPair(t)
	rules, err := iptables.Rules{ListenPort: nsListenPort, Ports: []int{nsPullPort}, Jumps: true}.Apply()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		sh(t, rules, "ip", "netns", "exec", srv, tool, "--noflush")
	}
	logs := &logBuffer{}
	dumpOnFailure(t, srv, logs)
	cfg := teamRoutes()
	cfg.Listen = "[::]:" + strconv.Itoa(nsListenPort)
	cfg.Port = []string{fmt.Sprintf("%d=team-a", nsPullPort)}
	cfg.ProxyProtocolFrom = []string{cliV4 + "/32", cliV6 + "/128"}
	st := stack.Start(t, stack.Options{
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Listen: nsListen(srv),
	})
	for _, tc := range []struct{ lb, dst, client string }{
		{cliV4, srvV4, "203.0.113.9"},
		{cliV6, srvV6, "2001:db8:ffff::9"},
	} {
		dial := nsDial(cli)
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				h := proxyproto.HeaderProxyFromAddrs(2,
					&net.TCPAddr{IP: net.ParseIP(tc.client), Port: 40000},
					&net.TCPAddr{IP: net.ParseIP(tc.dst), Port: 443})
				if _, err := h.WriteTo(c); err != nil {
					c.Close()
					return nil, err
				}
				return c, nil
			},
			TLSClientConfig: &tls.Config{ServerName: legacyName, RootCAs: st.Pool()},
		}
		cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		st.Nexus.ResetRequests()
		resp, err := cl.Get("https://" + net.JoinHostPort(tc.dst, strconv.Itoa(nsPullPort)) + "/v2/")
		if err != nil {
			t.Fatalf("%s via PROXY to the redirected port: %v", tc.dst, err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		reqs := st.Nexus.Requests()
		if resp.StatusCode != http.StatusUnauthorized || len(reqs) != 1 {
			t.Fatalf("%s: status %d, %d upstream requests", tc.dst, resp.StatusCode, len(reqs))
		}
		if reqs[0].Repo != "team-a" || reqs[0].Header.Get("X-Forwarded-For") != tc.client {
			t.Fatalf("%s: reached %q from %q, want team-a from %s", tc.dst, reqs[0].Repo, reqs[0].Header.Get("X-Forwarded-For"), tc.client)
		}
	}
}
