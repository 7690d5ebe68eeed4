package daemon_test

import (
	"io"
	"net"
	"net/url"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
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
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
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
