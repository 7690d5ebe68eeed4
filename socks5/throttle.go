package socks5

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nexmux/nexmux/internal/perclient"
)

// Failed logins are throttled per client (address, or IPv6 prefix with
// --per-client-ipv6-prefix): after maxLoginFailures
// failures (each within loginBlock of the previous one) every login from
// that address fails, right password or not, until loginBlock has passed
// without another try. Guessing then costs minutes per handful of tries.
const (
	maxLoginFailures = 5
	loginBlock       = time.Minute
	// throttleEntries bounds the table: past it, entries are swept (sweep).
	throttleEntries = 4096
)

type loginThrottle struct {
	// ipv6Prefix is --per-client-ipv6-prefix: failures count per client
	// as the other per-client limits do, or a host holding a /64 would
	// get maxLoginFailures guesses from each of its addresses.
	ipv6Prefix int
	mu         sync.Mutex
	m          map[netip.Addr]*failures
}

type failures struct {
	n    int
	last time.Time
}

// blocked reports whether a is throttled; a try while blocked extends it.
func (t *loginThrottle) blocked(a netip.Addr) bool {
	a = perclient.Key(a, t.ipv6Prefix)
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[a]
	if f == nil || time.Since(f.last) >= loginBlock {
		return false
	}
	if f.n >= maxLoginFailures {
		f.last = time.Now()
		return true
	}
	return false
}

// failed counts a failure and reports whether a is now blocked.
func (t *loginThrottle) failed(a netip.Addr) bool {
	a = perclient.Key(a, t.ipv6Prefix)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[netip.Addr]*failures{}
	}
	now := time.Now()
	if _, known := t.m[a]; !known && len(t.m) >= throttleEntries {
		t.sweep(now)
	}
	f := t.m[a]
	if f == nil || now.Sub(f.last) >= loginBlock {
		f = &failures{}
		t.m[a] = f
	}
	f.n++
	f.last = now
	return f.n == maxLoginFailures
}

// sweep makes room for a new client: stale entries go, then, when failed
// logins from that many addresses came within the minute, clients not
// blocked and at last blocked ones, down to 7/8 of the bound, so the
// table stays bounded and the next sweeps are that many failures away.
func (t *loginThrottle) sweep(now time.Time) {
	for k, f := range t.m {
		if now.Sub(f.last) >= loginBlock {
			delete(t.m, k)
		}
	}
	const room = throttleEntries * 7 / 8
	for _, blockedToo := range []bool{false, true} {
		for k, f := range t.m {
			if len(t.m) <= room {
				return
			}
			if blockedToo || f.n < maxLoginFailures {
				delete(t.m, k)
			}
		}
	}
}

func (t *loginThrottle) succeeded(a netip.Addr) {
	a = perclient.Key(a, t.ipv6Prefix)
	t.mu.Lock()
	delete(t.m, a)
	t.mu.Unlock()
}

// sessionUsers checks one client's logins: the current users, behind the
// client address's throttle.
type sessionUsers struct {
	ss   *session
	addr netip.Addr
}

func (u sessionUsers) Valid(user, password string) bool {
	s := u.ss.s
	if s.throttle.blocked(u.addr) {
		if s.opts.Refused != nil {
			s.opts.Refused(ReasonAuth)
		}
		if log, n := s.throttled.Note(); log {
			s.log.Info("socks5: login refused: too many failed logins from this client", "client", u.ss.client.RemoteAddr().String(), "reason", ReasonAuth, "refused", n)
		}
		u.ss.logged = true // the refusal has its line, or is counted in the next
		return false
	}
	if users(s.opts.Users).Valid(user, password) {
		s.throttle.succeeded(u.addr)
		u.ss.user = &login{user, password}
		return true
	}
	u.ss.refusedAs(ReasonAuth, "socks5: login refused: wrong user or password", "user", user)
	if s.throttle.failed(u.addr) {
		attrs := []any{"client", u.addr.String(), "failures", maxLoginFailures, "for", loginBlock}
		if p, ok := perclient.Prefix(u.addr, s.throttle.ipv6Prefix); ok {
			// The whole prefix is one client, and is blocked.
			attrs = append(attrs, "prefix", p)
		}
		s.log.Warn("socks5: failed logins from this client; throttled", attrs...)
	}
	return false
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}
