package mux

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/route"
	"go.uber.org/goleak"
)

// lingerPair is an HTTP/2 routedConn of s (its server side) and the
// client's end of the socket.
func lingerPair(t *testing.T, s *Server, requested bool) (*routedConn, net.Conn) {
	t.Helper()
	ln := testnet.Listen(t)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	info := &l7.ConnInfo{}
	if requested {
		info.MarkRequested()
	}
	return &routedConn{Conn: server, info: info, lingerer: s}, client
}

// Which HTTP/2 closes linger: one that served a request, while its client
// may still be reading; not one that never did, nor one whose client
// stopped reading (a write failed), which has nothing left to lose and
// would hold its place for as long as it kept sending.
func TestLingerCloseOnlyWhereAClientMayBeReading(t *testing.T) {
	s := lingerServer(t)
	for _, tc := range []struct {
		name              string
		requested, failed bool
		wantLinger        bool
	}{
		{"served a request", true, false, true},
		{"no request", false, false, false},
		{"a write failed", true, true, false},
	} {
		rc, client := lingerPair(t, s, tc.requested)
		rc.writeFailed.Store(tc.failed)
		if err := rc.Close(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := s.lingeringConns() == 1; got != tc.wantLinger {
			t.Fatalf("%s: lingers %v, want %v", tc.name, got, tc.wantLinger)
		}
		// Either way the client reads the end of the stream (a FIN).
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("%s: client read %d, %v; want EOF", tc.name, n, err)
		}
		if tc.wantLinger {
			// What the client sends meanwhile is read, not reset; its
			// close ends the linger.
			for range 3 {
				if _, err := client.Write([]byte("window update")); err != nil {
					t.Fatalf("%s: client write while lingering: %v", tc.name, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if s.lingeringConns() != 1 {
				t.Fatalf("%s: linger ended while the client still sent", tc.name)
			}
			client.Close()
			for deadline := time.Now().Add(5 * time.Second); s.lingeringConns() > 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: still lingering 5 s after the client closed", tc.name)
				}
			}
		}
	}
	// A write that fails (here at its deadline) marks the connection.
	rc, _ := lingerPair(t, s, true)
	_ = rc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := rc.Write([]byte("data")); err == nil {
		t.Fatal("write past its deadline succeeded")
	}
	_ = rc.Close()
	if s.lingeringConns() != 0 {
		t.Fatal("a connection whose write failed lingers")
	}
	_ = s.Shutdown(context.Background())
}

// A lingering close ends once the client's kernel has acknowledged
// everything and the client fell quiet (it has the whole response), not
// while bytes are still on their way to it; a drain waits for the latter
// only while it moves.
func TestLingerEndsOnceTheClientHasItAll(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIOCOUTQ is Linux's")
	}
	s := lingerServer(t)
	// Everything read: let go a second or so after the close.
	rc, client := lingerPair(t, s, true)
	_ = rc.Close()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v; want EOF", n, err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.lingeringConns() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still lingering 5 s after a client that has everything fell quiet")
		}
	}
	// 256 KiB the client does not read: most of it is still on its way.
	rc, _ = lingerPair(t, s, true)
	_ = rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.Write(make([]byte, 256<<10)); err != nil {
		t.Fatalf("256 KiB do not fit in the sockets' buffers: %v", err)
	}
	_ = rc.Close()
	time.Sleep(2 * lingerQuiet)
	if s.lingeringConns() != 1 {
		t.Fatal("a close lingers no more while the client has not received the response")
	}
	// It moves nothing: a drain gives up on it after drainStall.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*drainStall)
	defer cancel()
	_ = s.Shutdown(ctx)
	if took := time.Since(start); took > 2*drainStall {
		t.Fatalf("drain took %v for a lingering client that moved nothing", took)
	}
	if s.lingeringConns() != 0 {
		t.Fatal("lingering after Shutdown")
	}
}

// Connections that close while Shutdown runs, lingering or not, each give
// their place back once, and none lingers (nor its goroutine runs) after
// Shutdown returned.
func TestLingerCloseRacingShutdown(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	s := lingerServer(t)
	const n = 40
	var active atomic.Int64
	active.Store(n)
	conns := make([]*routedConn, n)
	for i := range conns {
		rc, client := lingerPair(t, s, true)
		rc.Conn = &countedConn{Conn: rc.Conn, active: &active, places: 1}
		switch i % 3 {
		case 0: // a client that has it all and keeps its side open
		case 1: // one that keeps sending
			go func() {
				for {
					if _, err := client.Write([]byte("window update")); err != nil {
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		case 2: // one with most of a response still to receive
			_ = rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = rc.Write(make([]byte, 128<<10))
		}
		conns[i] = rc
	}
	var wg sync.WaitGroup
	for i, rc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 6 * time.Millisecond)
			_ = rc.Close()
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	time.Sleep(10 * time.Millisecond)
	done := make(chan struct{})
	go func() { _ = s.Shutdown(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown still running 10 s after its 200 ms timeout")
	}
	wg.Wait()
	if got := s.lingeringConns(); got != 0 {
		t.Fatalf("%d connections linger after Shutdown", got)
	}
	if got := active.Load(); got != 0 {
		t.Fatalf("%d places taken after every connection closed, want 0", got)
	}
	goleak.VerifyNone(t, ignore)
}

// pollCounter is a client's TCP socket that counts how often a lingering
// close asks what the client has not acknowledged.
type pollCounter struct {
	*net.TCPConn
	polls atomic.Int64
}

func (c *pollCounter) UnackedByClient() func() (int, bool) {
	q := unackedOf(c.TCPConn)
	return func() (int, bool) { c.polls.Add(1); return q() }
}

// A lingering connection whose client takes nothing (its window shut, its
// host gone) is not woken four times a second until --send-timeout: the
// wake-ups back off while nothing moves, so thousands of them cost no CPU
// to speak of, and still come often enough for a drain to tell a moving
// one from a stalled one.
func TestLingerBacksOffWhileNothingMoves(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIOCOUTQ is Linux's")
	}
	s := lingerServer(t)
	ln := testnet.Listen(t)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	client, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	info := &l7.ConnInfo{}
	info.MarkRequested()
	pc := &pollCounter{TCPConn: server.(*net.TCPConn)}
	rc := &routedConn{Conn: pc, info: info, lingerer: s}
	_ = rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.Write(make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	_ = rc.Close()
	time.Sleep(6 * time.Second)
	if s.lingeringConns() != 1 {
		t.Fatal("a client that has not received the response is let go")
	}
	if n := pc.polls.Load(); n > 8 {
		t.Errorf("a stalled lingering connection was polled %d times in 6 s", n)
	}
	if s.lingeringMoving() {
		t.Error("a lingering connection that moved nothing for 6 s counts as moving")
	}
	// The client reads it all: the linger notices and ends.
	go func() { _, _ = io.Copy(io.Discard, client) }()
	for deadline := time.Now().Add(5 * time.Second); s.lingeringConns() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still lingering 5 s after the stalled client read everything")
		}
	}
	_ = s.Shutdown(context.Background())
}

// lingerServer is a Server whose lingers end only by what a test does:
// --send-timeout and --idle-timeout an hour.
func lingerServer(t *testing.T) *Server {
	t.Helper()
	tab, _ := route.Build(route.Spec{Routes: []string{"a.nexmux.test=a"}})
	s, err := New(Options{Handler: http.NotFoundHandler(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		SendTimeout: time.Hour, IdleTimeout: time.Hour}, &State{Table: tab})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
