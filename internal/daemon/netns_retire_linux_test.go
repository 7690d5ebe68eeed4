//go:build linux

package daemon_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/iptables"
	"github.com/nexmux/nexmux/internal/netns"
)

// TestNetnsRulesChangedUnderOpenConnections: what happens to a legacy-port
// connection that is open while the rules change (README, "Retiring the
// rules"). Re-applying them with --load (systemctl reload) replaces the
// chain in one transaction and the connection goes on. Deleting them cuts
// it where nothing else in the namespace uses NAT: the REDIRECT rule is
// what keeps conntrack (and its NAT) running there, so the client's next
// segments reach the legacy port itself untranslated and are reset. Where
// other NAT rules stay (Docker's MASQUERADE, say) the connection goes on.
func TestNetnsRulesChangedUnderOpenConnections(t *testing.T) {
	requireNetns(t, "iptables", "ip6tables")
	srv, cli := netnsPair(t)
	st, _ := legacyPortStack(t, srv)
	rules := iptables.Rules{ListenPort: nsListenPort, Ports: []int{nsPullPort}}
	inSrv := func(what string, f func() error) {
		t.Helper()
		if err := netns.Do(nsPath(srv), f); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	install := func(r iptables.Rules) {
		t.Helper()
		inSrv("install", func() error { return r.Install(iptables.Families, io.Discard) })
	}
	uninstall := func() {
		t.Helper()
		inSrv("uninstall", func() error { return rules.Uninstall(iptables.Families, io.Discard) })
	}
	// foreignNAT adds (-A) or removes (-D) a NAT rule of someone else's
	// that matches nothing here.
	foreignNAT := func(op string) {
		t.Helper()
		for _, fam := range iptables.Families {
			sh(t, "", "ip", "netns", "exec", srv, fam, "-w", "-t", "nat", op, "POSTROUTING", "-o", "nx-none", "-j", "MASQUERADE")
		}
	}

	// conn is a keep-alive HTTP/1.1 connection over TLS to host's legacy
	// pull port from the client namespace; get sends one GET /v2/ on it.
	type conn struct {
		c  *tls.Conn
		br *bufio.Reader
	}
	open := func(host string) *conn {
		t.Helper()
		raw, err := nsDial(cli)(ctxT(t), "tcp", net.JoinHostPort(host, strconv.Itoa(nsPullPort)))
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{ServerName: legacyName, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		t.Cleanup(func() { c.Close() })
		return &conn{c, bufio.NewReader(c)}
	}
	get := func(c *conn) error {
		// A connection that is cut answers with a reset at once; the
		// deadline only bounds a test that goes wrong otherwise.
		_ = c.c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c.c, "GET /v2/ HTTP/1.1\r\nHost: legacy\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusUnauthorized {
			err = fmt.Errorf("status %d, want 401 from team-a", resp.StatusCode)
		}
		return err
	}
	mustGet := func(what string, c *conn) {
		t.Helper()
		if err := get(c); err != nil {
			t.Fatalf("%s: GET /v2/: %v", what, err)
		}
	}

	for _, host := range []string{srvV4, srvV6} {
		t.Run(host, func(t *testing.T) {
			install(rules)
			c := open(host)
			mustGet("before", c)
			install(iptables.Rules{ListenPort: nsListenPort, Ports: []int{nsPullPort, nsPushPort}})
			mustGet("rules re-applied with another port added", c)
			install(rules)
			mustGet("rules re-applied as they were", c)

			foreignNAT("-A")
			uninstall()
			mustGet("rules deleted beside another NAT rule", c)
			c.c.Close()
			foreignNAT("-D")

			install(rules)
			c = open(host)
			mustGet("before", c)
			uninstall()
			err := get(c)
			if err == nil {
				t.Fatal("rules deleted with no other NAT in the namespace: the open connection still works; README says it is cut")
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("rules deleted: GET /v2/ timed out (%v), want the reset README describes", err)
			}
		})
	}
}
