package daemon

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/nexmux/nexmux/internal/lograte"
	"github.com/nexmux/nexmux/internal/perclient"
)

// MetricsMaxConns caps the metrics listener's connections in all, and
// MetricsConnsPerClient one address's. They are not counted against
// --max-conns, which leaves 128 descriptors of the fd limit for everything
// else (listeners, Nexus connections, files): the cap stays well inside
// that, and a scraper or a kubelet needs one or two at a time. Without it,
// any peer that reaches the listener (every pod, behind the pod IP) could
// hold a descriptor per connection until nexmux accepted no client at all.
const (
	MetricsMaxConns       = 64
	MetricsConnsPerClient = 8
)

// metricsListener closes, at accept, a connection beyond one address's
// cap. One beyond the cap in all takes the place of the connection that
// has waited longest without a request under way (a half-sent request, an
// idle keep-alive), so that peers holding the places with half-sent
// requests cannot shut out the kubelet's probes, whose failure would
// restart the pod; it is closed only when every place serves a request.
type metricsListener struct {
	net.Listener
	log       *slog.Logger
	perClient perclient.Counter
	refusals  lograte.Limiter
	evictions lograte.Limiter

	mu    sync.Mutex
	conns map[*metricsConn]struct{} // open
}

func newMetricsListener(ln net.Listener, log *slog.Logger) *metricsListener {
	ml := &metricsListener{Listener: ln, log: log, conns: map[*metricsConn]struct{}{}}
	ml.perClient.Max = MetricsConnsPerClient
	return ml
}

func (l *metricsListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var a netip.Addr
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			a = ta.AddrPort().Addr()
		}
		if a.IsValid() && !l.perClient.Acquire(a) {
			l.refuse(c, a, "too many metrics connections from this client")
			continue
		}
		mc := &metricsConn{Conn: c, l: l, addr: a, waiting: true, since: time.Now()}
		l.mu.Lock()
		var evict *metricsConn
		if len(l.conns) >= MetricsMaxConns {
			if evict = l.longestWaitingLocked(); evict == nil {
				l.mu.Unlock()
				if a.IsValid() {
					l.perClient.Release(a)
				}
				l.refuse(c, a, "too many metrics connections, each serving a request")
				continue
			}
			delete(l.conns, evict)
		}
		l.conns[mc] = struct{}{}
		l.mu.Unlock()
		if evict != nil {
			_ = evict.Close()
			if ok, n := l.evictions.Note(); ok {
				l.log.Info("metrics listener: full; closed the connection that waited longest without a request",
					"closed_client", evict.addr.String(), "client", a.String(), "max_conns", MetricsMaxConns, "closed", n)
			}
		}
		return mc, nil
	}
}

// longestWaitingLocked is the open connection without a request under
// way that has waited longest, or nil. l.mu is held.
func (l *metricsListener) longestWaitingLocked() *metricsConn {
	var oldest *metricsConn
	for c := range l.conns {
		if c.waiting && (oldest == nil || c.since.Before(oldest.since)) {
			oldest = c
		}
	}
	return oldest
}

// connState is the metrics server's ConnState: it tells which
// connections have a request under way.
func (l *metricsListener) connState(c net.Conn, s http.ConnState) {
	mc, ok := c.(*metricsConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateActive:
		mc.waiting = false
	case http.StateIdle:
		mc.waiting, mc.since = true, time.Now()
	}
}

func (l *metricsListener) refuse(c net.Conn, a netip.Addr, msg string) {
	c.Close()
	if ok, n := l.refusals.Note(); ok {
		l.log.Info("metrics listener: connection refused: "+msg, "client", a.String(),
			"max_conns", MetricsMaxConns, "max_conns_per_client", MetricsConnsPerClient, "refused", n)
	}
}

// metricsConn gives its places back once, when net/http closes it or the
// listener makes room.
type metricsConn struct {
	net.Conn
	l    *metricsListener
	addr netip.Addr
	once sync.Once
	// waiting and since (guarded by l.mu): no request is under way (none
	// read yet, or idle between keep-alive requests), since when.
	waiting bool
	since   time.Time
}

func (c *metricsConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		if c.addr.IsValid() {
			c.l.perClient.Release(c.addr)
		}
	})
	return err
}
