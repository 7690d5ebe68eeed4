package mux

import (
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
)

// liveConn is a routed connection a reload may revoke: its route may be
// removed, or the load balancer that named its client distrusted.
type liveConn struct {
	info *l7.ConnInfo
	peer net.Addr // the load balancer, when a PROXY header named the client
	// dialled routes it again at a reload, as a new connection would be
	// routed (sameRoute). Set before it is live, then only read.
	dialled dialled
	idle    atomic.Bool // HTTP: no request in flight (http.ConnState)
	// fresh: handed (back) to http.Server, no request read yet
	// (Server.fresh).
	fresh atomic.Bool
	close func()
	// headerTimer closes an HTTP/2 connection with no request by
	// --header-timeout (nil: HTTP/1).
	headerTimer *time.Timer
	// closeTimer closes a revoked HTTP/2 connection once net/http has
	// flushed its frames (closeH2); closed: http.Server let it go. Both
	// guarded by live.mu: the timer is stopped when the connection closes,
	// as it holds the connection.
	closeTimer *time.Timer
	closed     bool
	// idleFrom: HTTP/2, when it was handed over or its last busy spell
	// ended (Unix ns), for closeH2.
	idleFrom atomic.Int64
	// HTTP/2: Handled when its streams last went from none to some, and
	// whether net/http's opening Active/Idle pair (no stream) is past.
	busyFrom atomic.Uint64
	h2Begun  atomic.Bool
	// HTTP/2's idle clock (h2idle.go): streams answered, their count when
	// the current busy spell began, when the last spell with an answer
	// ended or answer came (Unix ns), whether the clock ran out during a
	// spell, and its span. idleTimer is set and stopped under live.mu.
	idleSpan    time.Duration
	answers     atomic.Uint64
	answersFrom atomic.Uint64
	lastAnswer  atomic.Int64
	idleOver    atomic.Bool
	idleTimer   *time.Timer
}

// beginFresh counts lc among the connections waiting for their first
// request (Server.fresh).
func (s *Server) beginFresh(lc *liveConn) {
	if lc != nil && lc.fresh.CompareAndSwap(false, true) {
		s.fresh.Add(1)
	}
}

// endFresh counts lc out of the connections waiting for their first
// request.
func (s *Server) endFresh(lc *liveConn) {
	if lc != nil && lc.fresh.Load() && lc.fresh.CompareAndSwap(true, false) {
		s.fresh.Add(-1)
	}
}

// live tracks routed connections: those http.Server serves, by the
// net.Conn it was given, and passthrough streams.
type live struct {
	mu      sync.Mutex
	http    map[net.Conn]*liveConn
	streams map[*liveConn]struct{}
}

func (l *live) addHTTP(c net.Conn, lc *liveConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.http == nil {
		l.http = map[net.Conn]*liveConn{}
	}
	l.http[c] = lc
}

func (l *live) addStream(lc *liveConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams == nil {
		l.streams = map[*liveConn]struct{}{}
	}
	l.streams[lc] = struct{}{}
}

func (l *live) removeStream(lc *liveConn) {
	l.mu.Lock()
	delete(l.streams, lc)
	l.mu.Unlock()
}

// connState follows http.Server's view of each connection: a revoked
// connection is closed as soon as it has no request in flight (HTTP/1.1:
// after the current response; HTTP/2: once its streams are done).
func (s *Server) connState(c net.Conn, state http.ConnState) {
	hc, h1 := c.(releasable)
	var lc *liveConn
	switch state {
	case http.StateNew:
		return
	case http.StateClosed, http.StateHijacked:
		if h1 {
			s.endFresh(hc.h1().live)
		}
		if h1 && state == http.StateClosed && parking(hc) {
			// net/http let go of an idle connection; it stays live.
			s.park(hc)
			return
		}
		s.live.mu.Lock()
		if !h1 {
			if lc := s.live.http[c]; lc != nil {
				s.endFresh(lc)
				if lc.headerTimer != nil {
					lc.headerTimer.Stop()
				}
				if lc.closeTimer != nil {
					lc.closeTimer.Stop()
				}
				if lc.idleTimer != nil {
					lc.idleTimer.Stop()
				}
				lc.closed = true
			}
		}
		delete(s.live.http, c)
		s.live.mu.Unlock()
		return
	}
	// Active and idle, twice a request: an HTTP/1 connection carries its
	// entry, so the server-wide lock is not taken.
	if h1 {
		lc = hc.h1().live
	} else {
		s.live.mu.Lock()
		lc = s.live.http[c]
		s.live.mu.Unlock()
	}
	if h1 && state == http.StateIdle {
		hc.h1().rel.idle.Store(true)
		// The response is flushed: what net/http writes before the next
		// handler runs is its own answer to a request it cannot parse.
		hc.h1().responding.Store(false)
	}
	if lc == nil {
		return
	}
	s.endFresh(lc)
	if !h1 {
		if state == http.StateIdle {
			lc.idleFrom.Store(time.Now().UnixNano())
		}
		// A busy spell in which no stream reached the handler was
		// refused by net/http alone; three in a row (with nexmux's own
		// refusals) end the connection, as one ends an HTTP/1 one.
		switch state {
		case http.StateActive:
			lc.busyFrom.Store(lc.info.Handled())
		case http.StateIdle:
			if lc.h2Begun.Swap(true) && lc.info.Handled() == lc.busyFrom.Load() && lc.info.RefusedBeforeHandler() {
				lc.close()
			}
		}
		if lc.idleTimer != nil {
			s.h2Spell(lc, state)
		}
	}
	lc.idle.Store(state == http.StateIdle)
	// revoke sets Revoked, then reads idle; this sets idle, then reads
	// Revoked: one of the two sees the other and closes.
	if state == http.StateIdle && lc.info.Revoked.Load() {
		lc.close()
	}
}

// h2FlushDelay lets net/http's HTTP/2 server flush the frames it wrote
// before the connection went idle: it tells ConnState first.
const h2FlushDelay = 50 * time.Millisecond

// closeH2 ends a revoked HTTP/2 connection with no stream in flight
// without cutting what it already wrote: the client may still be reading
// the last response, so the close lingers (linger.go). A stream in flight
// when the delay ends is not cut either. The delay counts from when the
// connection went idle. One idle for longer (a reload revoking it, the
// idle clock) has flushed everything: it reads no more from here on, so
// net/http's server ends it, and no request its client sends meanwhile
// gets a 421, which clients do not retry; such a request is lost with the
// connection instead, which go-containerregistry (crane) retries on a new
// one. (A GOAWAY would have every client retry
// it, but net/http's HTTP/2 server sends one to a single connection only
// with a response.)
func (s *Server) closeH2(lc *liveConn, tc *tls.Conn) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	// Called again each time the connection goes idle: one timer is enough.
	if lc.closed || lc.closeTimer != nil {
		return
	}
	wait := h2FlushDelay - time.Since(time.Unix(0, lc.idleFrom.Load()))
	if rc, ok := tc.NetConn().(*routedConn); ok && wait <= 0 && lc.idle.Load() {
		rc.closing.Store(true)
		rc.stopRead.Store(true)
		// Wakes net/http's read under way, which then finds stopRead;
		// the lingering close sets deadlines of its own.
		_ = rc.Conn.SetReadDeadline(time.Unix(1, 0))
	}
	lc.closeTimer = time.AfterFunc(max(wait, 0), func() {
		s.live.mu.Lock()
		if !lc.idle.Load() {
			// A stream began meanwhile (nothing told the client to stop):
			// it is not cut. Its end decides again (revoked, refused).
			lc.closeTimer = nil
			s.live.mu.Unlock()
			return
		}
		s.live.mu.Unlock()
		if rc, ok := tc.NetConn().(*routedConn); ok {
			rc.closing.Store(true)
		}
		_ = tc.Close()
	})
}

// revoke applies a new state to the live connections: those whose route is
// gone or changed, or whose load balancer is no longer trusted, end.
// Connections on routes that still exist are untouched.
func (s *Server) revoke(st *State) {
	var closing, busy []*liveConn
	s.live.mu.Lock()
	for _, lc := range s.live.http {
		if revokedBy(lc, st) {
			// A connection an earlier reload revoked stays here while
			// its request runs: logged then, not at every reload since.
			was := lc.info.Revoked.Swap(true)
			if lc.idle.Load() {
				closing = append(closing, lc)
			} else if !was {
				busy = append(busy, lc)
			}
		}
	}
	for lc := range s.live.streams {
		if revokedBy(lc, st) {
			lc.info.Revoked.Store(true)
			closing = append(closing, lc)
		}
	}
	s.live.mu.Unlock()
	for _, lc := range busy {
		// connState closes it once its requests are done.
		s.log.Info("connection revoked by reload", "client", lc.info.ClientString(), "route", lc.info.Route.Key, "in_flight", true)
	}
	for _, lc := range closing {
		s.log.Info("connection revoked by reload", "client", lc.info.ClientString(), "route", lc.info.Route.Key)
		lc.close()
	}
}

// revokedMeanwhile reports whether a reload since d's state (taken at
// accept) removed what lc depends on. Until lc was live (its TLS handshake, a passthrough
// backend's dial) revoke could not see it; lc must be in s.live already,
// so that every later reload sees it instead.
func (s *Server) revokedMeanwhile(d decision, lc *liveConn) bool {
	st := s.state.Load()
	if st == d.state || !revokedBy(lc, st) {
		return false
	}
	lc.info.Revoked.Store(true)
	s.log.Info("connection revoked by reload", "client", lc.info.ClientString(), "route", lc.info.Route.Key)
	return true
}

func revokedBy(lc *liveConn, st *State) bool {
	if lc.peer != nil {
		if st.ProxyProtocol == nil {
			return true
		}
		if p := st.ProxyProtocol(lc.peer); p != proxyproto.REQUIRE && p != proxyproto.USE {
			return true
		}
	}
	return !sameRoute(lc.info, &lc.dialled, st.Table)
}

// sameRoute reports whether t routes the connection as a new one would be
// routed, to the route that serves it: same kind and key, same
// repositories, backend or mirrored registries. So a name given a route of
// its own (or a more specific wildcard) leaves the route that served it
// until then, and so does a port given a route.
func sameRoute(info *l7.ConnInfo, dl *dialled, t *route.Table) bool {
	rt := info.Route
	if rt == nil {
		return true
	}
	var r *route.Route
	switch port := dl.port(t); {
	case port != 0:
		r = t.LookupPort(port)
	case info.ServerName != "":
		r = t.LookupServerName(info.ServerName)
	default:
		r = t.Default()
	}
	return r != nil && r.Kind == rt.Kind && r.Key == rt.Key &&
		r.Target == rt.Target && r.Passthrough == rt.Passthrough && sameMirror(r.Mirror, rt.Mirror)
}

// sameMirror: a mirror name keeps its connections only while it serves the
// same registries from the same repositories.
func sameMirror(a, b *route.Mirror) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Registries, b.Registries)
}
