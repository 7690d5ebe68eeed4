package mux

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/nexmux/nexmux/internal/perclient"
	"github.com/nexmux/nexmux/sni"
)

// passthrough is the target of --passthrough routes: it copies the
// connection raw to the route's backend, TLS and all. The bytes read while
// routing (the hello, and anything the client sent after it) are written
// first, after an optional PROXY header; then both directions copy between
// the kernel sockets themselves so Linux can splice.
type passthrough struct{ s *Server }

var _ target = passthrough{}

func (p passthrough) serve(d decision) {
	c, info := d.conn, d.info
	log := &connLog{s: p.s, info: info, peer: d.peer}
	defer p.s.track.RemoveConn(d.raw)
	defer c.Close()
	rt := info.Route
	defer p.s.active.Add(-d.extra) // taken by routing
	dialer := net.Dialer{Timeout: DialTimeout}
	// The server's context ends when a drain runs out, so a dial to a
	// black-holed backend cannot hold Shutdown past its deadline.
	up, err := dialer.DialContext(p.s.life, "tcp", rt.Passthrough)
	if err != nil {
		log.refuse(ReasonUpstream, "passthrough backend unreachable", "backend", rt.Passthrough, "err", err)
		// The client waits for a ServerHello: say it failed on this side.
		refuseWithAlert(c, d.raw, sni.AlertInternalError, time.Time{})
		return
	}
	defer up.Close()
	if v := d.state.PassthroughProxyHeader; v != 0 {
		src := net.TCPAddrFromAddrPort(info.Client)
		// The header's destination, or (no header, or one naming no IP
		// destination: LOCAL, AF_UNIX) the listener's own address.
		dst, _ := c.LocalAddr().(*net.TCPAddr)
		if dst == nil {
			dst, _ = d.raw.LocalAddr().(*net.TCPAddr)
		}
		if dst == nil {
			dst = &net.TCPAddr{}
		}
		h := proxyproto.HeaderProxyFromAddrs(v, src, dst)
		if v == 2 && info.ServerName != "" {
			// The backend learns which name the client asked for
			// without parsing TLS itself.
			_ = h.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(info.ServerName)}})
		}
		if _, err := h.WriteTo(up); err != nil {
			log.logger().Info("passthrough: writing the PROXY header failed", "err", err)
			return
		}
	}
	if _, err := up.Write(d.prefix); err != nil {
		log.logger().Info("passthrough: writing the hello to the backend failed", "err", err)
		return
	}
	lc := &liveConn{info: info, peer: d.peer, dialled: d.dialled, close: func() { c.Close(); up.Close() }}
	p.s.live.addStream(lc)
	defer p.s.live.removeStream(lc)
	if p.s.revokedMeanwhile(d, lc) {
		return
	}
	pp := &piping{}
	// What the backend sends once the client has gone is dropped (run):
	// it is no traffic, or a backend that sends without reading the
	// client's last bytes would hold the stream for as long as it sends.
	backendDropped := func() bool { return pp.dropping(1) }
	stop := watchIdle(c, up, p.s.opts.PassthroughIdleTimeout, backendDropped, func() {
		log.logger().Info("passthrough: idle stream closed", "backend", rt.Passthrough, "idle", p.s.opts.PassthroughIdleTimeout)
		c.Close()
		up.Close()
	}, func(side string) {
		// side reads nothing of what it is sent (and may still send).
		// Reset: closed with a FIN, a socket whose peer keeps its window
		// shut holds its send queue on, and the stream was cut, not ended.
		log.logger().Info("passthrough: stalled stream closed", "backend", rt.Passthrough, "side", side, "idle", p.s.opts.PassthroughIdleTimeout)
		cut(c)
		abort(up)
		c.Close()
		up.Close()
	})
	defer stop()
	in, out := pp.run(c, up)
	if p.s.opts.Streamed != nil {
		p.s.opts.Streamed(rt, int64(len(d.prefix))+in, out)
	}
}

// streamExtraPlaces is what a passthrough stream takes of --max-conns
// beyond its own place: it holds the backend's socket too and, while Linux
// splices, a pipe each way (two descriptors each), where --max-conns'
// default allows two descriptors a place.
const streamExtraPlaces = 2

// takeStreamPlaces takes a passthrough stream's extra places, or refuses
// it (logged and counted as max_conns) when --max-conns has none left.
func (s *Server) takeStreamPlaces() bool {
	// Both at once: one taken and given back would refuse, meanwhile,
	// another client that fitted.
	if !perclient.TakeNBelow(&s.active, streamExtraPlaces, int64(s.opts.MaxConns)) {
		s.refusedOverLimit()
		return false
	}
	return true
}

// run, the pipe, copies both ways until both directions are done, passing
// each EOF on as a half-close so protocols that shut down one side keep
// working, and a reset on as a reset (abort). What a side sent before it
// went away is delivered before its end is passed on: a reset drops
// whatever the socket still holds, and for the other side those bytes came
// first. It returns the bytes copied from a to b (direction 0) and from b
// to a (direction 1).
func (p *piping) run(a, b net.Conn) (ab, ba int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ab = p.copy(0, b, a) }()
	go func() { defer wg.Done(); ba = p.copy(1, a, b) }()
	wg.Wait()
	return ab, ba
}

// piping is what the pipe's two directions know of each other.
type piping struct {
	mu sync.Mutex
	// done: the direction's copy has returned.
	done [2]bool
	// discarding: the direction's destination went away; it reads and
	// drops its source's bytes until the other direction, delivering what
	// the destination sent before, ends the stream.
	discarding [2]bool
}

// dropping reports whether direction i reads its source only to drop it.
func (p *piping) dropping(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.discarding[i]
}

// copy is direction i of the pipe, from src to dst.
func (p *piping) copy(i int, dst, src net.Conn) int64 {
	n, err := io.Copy(rawWriter(dst), rawReader(src))
	p.mu.Lock()
	p.done[i] = true
	otherDone, otherDiscarding := p.done[1-i], p.discarding[1-i]
	reset := err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
	dstGone, srcGone := reset && wasReset(dst), reset && wasReset(src)
	if dstGone && !srcGone && !otherDone {
		// The write failed, but what dst sent before its reset is still
		// queued for the other direction to read: it delivers that to src
		// and then ends the stream; src's bytes have nowhere to go.
		p.discarding[i] = true
		p.mu.Unlock()
		_, _ = io.Copy(io.Discard, rawReader(src))
		return n
	}
	p.mu.Unlock()
	switch {
	case err == nil:
		closeWrite(dst)
		if otherDiscarding {
			// src ended with a FIN and then went away: all it sent is
			// delivered, its reset goes on after it.
			abortAfterFlush(dst)
			src.Close()
		}
	case srcGone && !dstGone:
		// Everything src sent before its reset has been written to dst.
		abortAfterFlush(dst)
		src.Close()
	case dstGone && !srcGone:
		// The other direction has delivered all dst sent already.
		abortAfterFlush(src)
		dst.Close()
	default:
		// One side failed: tear both down, the other copy returns. A
		// reset goes on as a reset: closed with a FIN, the other side
		// would take a cut stream for one that ended.
		if reset {
			abort(dst)
			abort(src)
		}
		dst.Close()
		src.Close()
	}
	return n
}

// abortAfterFlush ends c with a reset once its peer has acknowledged all
// that was written to c (a reset drops the send queue), or at once where
// that cannot be known. A peer that never reads holds c until the stream's
// idle watch or a revoke closes it.
func abortAfterFlush(c net.Conn) {
	for wait := time.Millisecond; !sendQueueEmpty(c); wait = min(2*wait, 250*time.Millisecond) {
		time.Sleep(wait)
	}
	abort(c)
	c.Close()
}

// rawReader and rawWriter return the *net.TCPConn under wrappers so that
// io.Copy reaches (*TCPConn).ReadFrom and its splice path. A PROXY protocol
// reader may still hold read-ahead bytes, so it is kept: its WriteTo drains
// them first and then copies from the socket.
func rawReader(c net.Conn) io.Reader {
	if pc, ok := c.(*proxyproto.Conn); ok {
		return pc
	}
	if tc, ok := underlyingTCP(c); ok {
		return tc
	}
	return c
}

func rawWriter(c net.Conn) io.Writer {
	if tc, ok := underlyingTCP(c); ok {
		return tc
	}
	return c
}

// abort makes c's close a reset: the side that was reset already sends
// nothing more, the other learns the stream was cut. A SOCKS5 stream's
// socket pair has no reset of its own: its end passes one on to the SOCKS
// client (Abort).
func abort(c net.Conn) {
	if tc, ok := underlyingTCP(c); ok {
		_ = tc.SetLinger(0)
		return
	}
	if a, ok := underlying[interface{ Abort() }](c); ok {
		a.Abort()
	}
}

// cut is abort for a stream cut with bytes still on their way to c's
// peer: a SOCKS5 stream's socket-pair end has the SOCKS session reset its
// client at once (Cut), where after abort it would first pass on what the
// pair holds, which a client that reads nothing never takes.
func cut(c net.Conn) {
	if k, ok := underlying[interface{ Cut() }](c); ok {
		k.Cut()
		return
	}
	abort(c)
}

func closeWrite(c net.Conn) {
	// The socket below the wrappers: a TCP connection, or a SOCKS5
	// stream's socket-pair end, whose client may still be sending.
	if cw, ok := underlying[interface{ CloseWrite() error }](c); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
