package l7

import (
	"context"
	"errors"
	"net"
)

// The drain's end. A request still waiting on Nexus when --drain-timeout
// ends would wait on: its round trip ignores its client (see failover), and
// Nexus may take up to upstreamResponseHeaderTimeout to answer. So
// DrainEnded closes every connection to Nexus, which ends each such round
// trip at once; the handler then answers 503, logs its line and counts it.
// The connections are known from their dial and close, never per request.

// errDrainEnded is the dial's answer once the drain's end cut the Nexus
// connections: a request must not be sent again (the Transport retries an
// idempotent one whose reused connection broke).
var errDrainEnded = errors.New("nexmux is stopping: the drain's time is up")

// upstreamConns are a transport's open connections to Nexus.
type upstreamConns struct {
	conns cutSet[*upstreamConn]
	// ended ends the dials under way at cutAll: a node that does not
	// answer SYN would hold one for upstreamDialTimeout.
	ended context.Context
	end   context.CancelFunc
}

func newUpstreamConns() *upstreamConns {
	u := &upstreamConns{}
	u.ended, u.end = context.WithCancel(context.Background())
	return u
}

// add tracks c; false once cutAll ran.
func (u *upstreamConns) add(c *upstreamConn) bool { return u.conns.add(c) }

func (u *upstreamConns) remove(c *upstreamConn) { u.conns.remove(c) }

// cutAll closes every connection, busy or idle, and refuses new ones.
func (u *upstreamConns) cutAll() {
	conns := u.conns.cutAll()
	u.end()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

// trackedDial is dial whose connections u tracks.
func (u *upstreamConns) trackedDial(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		// Per dial, not per request: connections to Nexus are pooled.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(u.ended, cancel)()
		c, err := dial(ctx, network, addr)
		if err != nil {
			if u.ended.Err() != nil {
				return nil, errDrainEnded
			}
			return nil, err
		}
		uc, ok := c.(*upstreamConn)
		if !ok {
			return c, nil
		}
		uc.conns = u
		if !u.add(uc) {
			_ = uc.Conn.Close()
			return nil, errDrainEnded
		}
		return uc, nil
	}
}

func (c *upstreamConn) Close() error {
	if c.conns != nil {
		c.conns.remove(c)
	}
	return c.Conn.Close()
}

// NexusInFlight is the number of requests holding a connection slot to
// Nexus now: waiting for its answer, or reading its body.
func (p *Proxy) NexusInFlight() int {
	n := 0
	p.up.pools.m.Range(func(_ string, np *nodePool) bool {
		np.mu.Lock()
		n += np.taken
		np.mu.Unlock()
		return true
	})
	return n
}
