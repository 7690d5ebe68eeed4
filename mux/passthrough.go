package mux

import (
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/nexmux/nexmux/route"
)

// passthrough copies a connection raw to the route's backend, TLS and all.
// The peeked hello is written first; after it both directions copy between
// the kernel sockets themselves so Linux can splice.
func (s *Server) passthrough(log *slog.Logger, c net.Conn, hello []byte, rt *route.Route) {
	defer s.untrackConn(c)
	defer c.Close()
	d := net.Dialer{Timeout: DialTimeout}
	up, err := d.Dial("tcp", rt.Passthrough)
	if err != nil {
		s.refuse(log, ReasonUpstream, "passthrough backend unreachable", "backend", rt.Passthrough, "err", err)
		return
	}
	defer up.Close()
	if _, err := up.Write(hello); err != nil {
		log.Info("passthrough: writing the hello to the backend failed", "err", err)
		return
	}
	pipe(c, up)
}

// pipe copies both ways until both directions are done, passing each EOF on
// as a half-close so protocols that shut down one side keep working.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(rawWriter(dst), rawReader(src))
		if err != nil {
			// One side failed: tear both down, the other copy returns.
			a.Close()
			b.Close()
			return
		}
		closeWrite(dst)
	}
	go cp(b, a)
	go cp(a, b)
	wg.Wait()
}

// rawReader and rawWriter return the *net.TCPConn under wrappers so that
// io.Copy reaches (*TCPConn).ReadFrom and its splice path. A wrapper that
// still holds buffered bytes (PROXY protocol reader) is kept as is.
func rawReader(c net.Conn) io.Reader {
	if tc, ok := c.(*net.TCPConn); ok {
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

func closeWrite(c net.Conn) {
	if tc, ok := underlyingTCP(c); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}
