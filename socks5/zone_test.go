package socks5_test

import (
	"strings"
	"testing"

	"github.com/nexmux/nexmux/route"
)

// A zone names an interface of the client's host ("fe80::1%eth0"): no
// SOCKS5 address (ATYP 4) carries one and no host name holds a "%", so a
// name with a zone is neither an IP literal nor a route name. It is
// refused "not allowed by ruleset" on the TLS port, where an IP literal
// would reach the default route; a port route still takes it, as it takes
// any host.
func TestZonedIPv6NameRefused(t *testing.T) {
	st := start(t, config{spec: route.Spec{Default: "fallback", Ports: []string{"8082=team-p"}}})
	for _, host := range []string{"fe80::1%eth0", "::1%lo", "[::1%lo]", "[fe80::1%25eth0]", "fe80::1%eth0.", "::ffff:127.0.0.1%lo", "127.0.0.1%lo"} {
		code, _, err := connect(t, st.socksAddr, nil, 1, host, 443)
		if err != nil || code != replyNotAllowed {
			t.Errorf("CONNECT %s:443 (ATYP 3): reply %d, %v; want %d (not allowed by ruleset)", host, code, err, replyNotAllowed)
		}
	}
	if strings.Contains(st.logs.String(), "0.0.0.0") {
		t.Errorf("a refusal names the resolver's placeholder:\n%s", st.logs.String())
	}
	if code, _, err := connect(t, st.socksAddr, nil, 1, "fe80::1%eth0", 8082); err != nil || code != replySucceeded {
		t.Errorf("CONNECT fe80::1%%eth0:8082 (a port route): reply %d, %v; want %d", code, err, replySucceeded)
	}
}
