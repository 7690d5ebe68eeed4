package daemon

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

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

// metricsListener closes, at accept, a connection beyond either cap.
type metricsListener struct {
	net.Listener
	log       *slog.Logger
	open      atomic.Int64
	perClient perclient.Counter
	refusals  lograte.Limiter
}

func newMetricsListener(ln net.Listener, log *slog.Logger) *metricsListener {
	ml := &metricsListener{Listener: ln, log: log}
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
		if l.open.Add(1) > MetricsMaxConns {
			l.open.Add(-1)
			l.refuse(c, a, "too many metrics connections")
			continue
		}
		if a.IsValid() && !l.perClient.Acquire(a) {
			l.open.Add(-1)
			l.refuse(c, a, "too many metrics connections from this client")
			continue
		}
		return &metricsConn{Conn: c, l: l, addr: a}, nil
	}
}

func (l *metricsListener) refuse(c net.Conn, a netip.Addr, msg string) {
	c.Close()
	if ok, n := l.refusals.Note(); ok {
		l.log.Info("metrics listener: connection refused: "+msg, "client", a.String(),
			"max_conns", MetricsMaxConns, "max_conns_per_client", MetricsConnsPerClient, "refused", n)
	}
}

// metricsConn gives its places back once, when net/http closes it.
type metricsConn struct {
	net.Conn
	l    *metricsListener
	addr netip.Addr
	once sync.Once
}

func (c *metricsConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.addr.IsValid() {
			c.l.perClient.Release(c.addr)
		}
		c.l.open.Add(-1)
	})
	return err
}
