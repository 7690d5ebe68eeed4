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

// MetricsEvictAfter is how long a connection serving a request must have
// been open before it may give its place to a new one when every place is
// taken: the listener's answers take milliseconds, so a connection busy
// whenever one comes is a peer that pipelines requests and reads the
// answers slowly or never.
const MetricsEvictAfter = time.Second

// metricsListener closes, at accept, a connection beyond one address's
// cap. One beyond the cap in all takes the place of the connection that
// has waited longest without a request under way (a half-sent request, an
// idle keep-alive), or else of the connection serving a request that was
// opened first, MetricsEvictAfter ago at least (a peer that pipelines
// requests and never reads the answers blocks a write, until the write
// timeout (DefaultMetricsWriteTimeout) ends its connection; one that
// reads them slowly is always busy), so that peers holding the places
// cannot shut out the kubelet's probes, whose failure would restart the
// pod; it is closed only when every place serves a request on a connection
// opened within MetricsEvictAfter.
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
		now := time.Now()
		mc := &metricsConn{Conn: c, l: l, addr: a, waiting: true, since: now, opened: now}
		l.mu.Lock()
		var evict *metricsConn
		stuck := false
		if len(l.conns) >= MetricsMaxConns {
			if evict = l.evictableLocked(now); evict == nil {
				l.mu.Unlock()
				if a.IsValid() {
					l.perClient.Release(a)
				}
				l.refuse(c, a, "too many metrics connections, each serving a request on a new connection")
				continue
			}
			stuck = !evict.waiting
			delete(l.conns, evict)
		}
		l.conns[mc] = struct{}{}
		l.mu.Unlock()
		if evict != nil {
			_ = evict.Close()
			if ok, n := l.evictions.Note(); ok {
				msg := "metrics listener: full; closed the connection that waited longest without a request"
				if stuck {
					msg = "metrics listener: full; closed the oldest connection, serving a request"
				}
				l.log.Info(msg,
					"closed_client", evict.addr.String(), "client", a.String(), "max_conns", MetricsMaxConns, "closed", n)
			}
		}
		return mc, nil
	}
}

// evictableLocked is the open connection without a request under way
// that has waited longest, else the oldest one if it was opened
// MetricsEvictAfter or more before now, else nil. l.mu is held.
func (l *metricsListener) evictableLocked(now time.Time) *metricsConn {
	var waiting, serving *metricsConn
	for c := range l.conns {
		if c.waiting {
			if waiting == nil || c.since.Before(waiting.since) {
				waiting = c
			}
		} else if serving == nil || c.opened.Before(serving.opened) {
			serving = c
		}
	}
	if waiting != nil {
		return waiting
	}
	if serving != nil && now.Sub(serving.opened) >= MetricsEvictAfter {
		return serving
	}
	return nil
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
		mc.waiting, mc.since = false, time.Now()
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
	// read yet, or idle between keep-alive requests), or one is, since
	// when.
	waiting bool
	since   time.Time
	opened  time.Time // accepted
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
