package mux

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// sendPair is a loopback TCP connection with small buffers on both ends:
// the server's writes wait on the client's reads. The server's end is a
// routedConn.
func sendPair(t *testing.T) (*routedConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	small := func(opt int) func(_, _ string, rc syscall.RawConn) error {
		return func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, opt, 16<<10) })
		}
	}
	d := net.Dialer{Control: small(syscall.SO_RCVBUF)}
	cl, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = srv.(*net.TCPConn).SetWriteBuffer(16 << 10)
	t.Cleanup(func() { cl.Close(); srv.Close() })
	return &routedConn{Conn: srv}, cl
}

// trickle reads c in pieces of size every pause until it fails or stop
// is closed.
func trickle(c net.Conn, size int, pause time.Duration, stop <-chan struct{}) {
	buf := make([]byte, size)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(pause):
		}
	}
}

// writeIn writes n bytes to w and reports the result and how long it took.
func writeIn(w io.Writer, n int) (int, time.Duration, error) {
	start := time.Now()
	m, err := w.Write(make([]byte, n))
	return m, time.Since(start), err
}

// A write under a send deadline goes on for as long as the client takes
// bytes, however long the whole write takes.
func TestSendDeadlineFollowsProgress(t *testing.T) {
	rc, cl := sendPair(t)
	stop := make(chan struct{})
	defer close(stop)
	go trickle(cl, 16<<10, 20*time.Millisecond, stop)
	// About 800 KiB/s at best: 2 MiB take well past the 300 ms span.
	_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	if n, took, err := writeIn(rc, 2<<20); err != nil {
		t.Fatalf("write to a client reading steadily failed after %d bytes, %v: %v", n, took, err)
	} else if took < 600*time.Millisecond {
		t.Fatalf("2 MiB written in %v: the client was not slow enough to test anything", took)
	}
}

// A client that stops reading is cut about a span after its last byte.
func TestSendDeadlineCutsStoppedClient(t *testing.T) {
	rc, cl := sendPair(t)
	go func() { _, _ = io.CopyN(io.Discard, cl, 256<<10) }()
	_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, took, err := writeIn(rc, 64<<20)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a client that stopped reading: %d bytes, %v", n, err)
	}
	if took > 5*time.Second {
		t.Fatalf("cut after %v; want about 300 ms after its last byte", took)
	}
	if n < 256<<10 {
		t.Fatalf("cut after %d bytes; the client read 256 KiB", n)
	}
}

// A client that takes bytes, but fewer than sendQuantum a span, is cut
// all the same: reading a byte now and then must not hold a response (and
// the Nexus connection behind it) for good, as --body-timeout's 64 KiB
// rule keeps a trickled upload from doing.
func TestSendDeadlineCutsTricklingClient(t *testing.T) {
	rc, cl := sendPair(t)
	stop := make(chan struct{})
	defer close(stop)
	// 1 KiB every 20 ms: under 50 KiB/s, against 64 KiB a second. (The
	// client's kernel opens its window only once several KiB are free,
	// so the span must be long enough to see bytes move.)
	go trickle(cl, 1<<10, 20*time.Millisecond, stop)
	// Without a cut the write would take over 20 minutes: end it sooner.
	guard := time.AfterFunc(15*time.Second, func() { cl.Close() })
	defer guard.Stop()
	_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(time.Second))
	n, took, err := writeIn(rc, 64<<20)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a client trickling 50 KiB/s: %d bytes in %v, %v; want a timeout", n, took, err)
	}
	if took > 10*time.Second {
		t.Fatalf("trickling client cut after %v; want within about a span of its last 64 KiB", took)
	}
}

// Every other deadline stays absolute: crypto/tls's close_notify (5 s),
// net/http's, a deadline in the past that aborts a write.
func TestAbsoluteDeadlineEndsSendDeadline(t *testing.T) {
	t.Run("future", func(t *testing.T) {
		rc, cl := sendPair(t)
		stop := make(chan struct{})
		defer close(stop)
		go trickle(cl, 16<<10, 20*time.Millisecond, stop)
		_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(time.Hour))
		_ = rc.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		n, took, err := writeIn(rc, 64<<20)
		if !errors.Is(err, os.ErrDeadlineExceeded) || took > 5*time.Second {
			t.Fatalf("absolute 300 ms deadline, client reading slowly: %d bytes in %v, %v; want a timeout", n, took, err)
		}
	})
	t.Run("SetDeadline", func(t *testing.T) {
		rc, cl := sendPair(t)
		stop := make(chan struct{})
		defer close(stop)
		go trickle(cl, 16<<10, 20*time.Millisecond, stop)
		_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(time.Hour))
		_ = rc.SetDeadline(time.Now().Add(300 * time.Millisecond))
		n, took, err := writeIn(rc, 64<<20)
		if !errors.Is(err, os.ErrDeadlineExceeded) || took > 5*time.Second {
			t.Fatalf("absolute 300 ms deadline, client reading slowly: %d bytes in %v, %v; want a timeout", n, took, err)
		}
	})
	t.Run("past", func(t *testing.T) {
		rc, _ := sendPair(t)
		_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(time.Hour))
		_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(-time.Second))
		if n, err := rc.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("send deadline in the past: wrote %d, %v; want a timeout at once", n, err)
		}
	})
	t.Run("abort", func(t *testing.T) {
		// A write waiting under a send deadline, aborted from elsewhere
		// by a deadline in the past, fails at once however it moves.
		rc, cl := sendPair(t)
		stop := make(chan struct{})
		defer close(stop)
		go trickle(cl, 16<<10, 20*time.Millisecond, stop)
		_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(time.Hour))
		done := make(chan error, 1)
		go func() { _, err := rc.Write(make([]byte, 64<<20)); done <- err }()
		time.Sleep(200 * time.Millisecond)
		_ = rc.SetWriteDeadline(time.Now())
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("aborted write: %v, want a timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("write still going 5 s after a deadline in the past")
		}
	})
}

// A response goes out in many writes, each armed anew by the HTTP stage
// (a 32 KiB copy of a tags list, a small Nexus chunk): they share one
// budget. A client taking each write within a span, but under sendQuantum
// a span, must be cut as in one long write, not held a span per write.
func TestSendDeadlineSpansWrites(t *testing.T) {
	rc, cl := sendPair(t)
	stop := make(chan struct{})
	defer close(stop)
	// 8 KiB every 400 ms: each 8 KiB write is taken well within the 2 s
	// span, yet the client takes ~40 KiB a span, not 64.
	go trickle(cl, 8<<10, 400*time.Millisecond, stop)
	guard := time.AfterFunc(20*time.Second, func() { cl.Close() })
	defer guard.Stop()
	buf := make([]byte, 8<<10)
	start := time.Now()
	for {
		_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, err := rc.Write(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil || time.Since(start) > 12*time.Second {
			t.Fatalf("client taking ~40 KiB a 2 s span, one write at a time: %v after %v; want a timeout within a few spans", err, time.Since(start))
		}
	}
}

// Time between a response's writes is Nexus's, not the client's: it does
// not count against the send deadline.
func TestSendDeadlineIgnoresPausesBetweenWrites(t *testing.T) {
	rc, cl := sendPair(t)
	go func() { _, _ = io.Copy(io.Discard, cl) }()
	buf := make([]byte, 1<<10)
	for i := range 4 {
		_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := rc.Write(buf); err != nil {
			t.Fatalf("write %d after a pause longer than the span, client reading: %v", i, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Nor does the time before a response's first socket write: its first
// writes may only fill net/http's buffers while Nexus sends slowly, each
// armed anew, and the socket sees nothing until they fill.
func TestSendDeadlineIgnoresTimeBeforeFirstWrite(t *testing.T) {
	rc, cl := sendPair(t)
	go func() { _, _ = io.Copy(io.Discard, cl) }()
	for range 3 {
		_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		time.Sleep(150 * time.Millisecond)
	}
	if _, err := rc.Write(make([]byte, 1<<10)); err != nil {
		t.Fatalf("first socket write 450 ms after the response's first 200 ms send deadline, client reading: %v", err)
	}
}

// A send deadline set while an absolute one is in force (crypto/tls's 5 s
// for its close_notify, sent by a Close from another goroutine while the
// handler waits on Nexus) does not stretch it: that write still ends at
// the absolute deadline.
func TestSendDeadlineDoesNotStretchAbsolute(t *testing.T) {
	rc, _ := sendPair(t) // the client reads nothing
	_ = rc.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	done := make(chan error, 1)
	go func() { _, err := rc.Write(make([]byte, 64<<20)); done <- err }()
	time.Sleep(100 * time.Millisecond)
	_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(time.Hour))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write under an absolute 300 ms deadline: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write still going 5 s after its absolute 300 ms deadline: a send deadline set meanwhile replaced it")
	}
}

// A response the socket's buffer takes at once needs no write deadline:
// the send deadline sets the socket's timer only once a write has to wait.
// (A timer set and cleared per small response is CPU nexmux spends per
// request.) The deadline still holds for a write that waits: see
// TestSendDeadlineCutsStoppedClient.
func TestSendDeadlineSetsNoTimerForWriteTakenAtOnce(t *testing.T) {
	rc, cl := sendPair(t)
	go func() { _, _ = io.Copy(io.Discard, cl) }()
	_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(time.Minute))
	if n, _, err := writeIn(rc, 1<<10); err != nil || n != 1<<10 {
		t.Fatalf("write of 1 KiB: %d bytes, %v", n, err)
	}
	rc.dmu.Lock()
	check, span := rc.sendCheck, rc.sendSpan
	rc.dmu.Unlock()
	if span <= 0 {
		t.Fatalf("no send deadline in force after the write (span %v)", span)
	}
	if !check.IsZero() {
		t.Fatalf("the socket's write deadline was set (%v) for a write the socket took at once", check)
	}
}

// A write that began before the send deadline was set, under no deadline,
// and waits on a client that stopped reading, gets the send deadline too:
// otherwise it would wait for good.
func TestSendDeadlineReachesWriteAlreadyWaiting(t *testing.T) {
	rc, cl := sendPair(t)
	guard := time.AfterFunc(15*time.Second, func() { cl.Close() })
	defer guard.Stop()
	done := make(chan error, 1)
	go func() {
		_, _, err := writeIn(rc, 64<<20)
		done <- err
	}()
	// Let the write fill the socket buffers and wait.
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	_ = (*sendDeadline)(rc).SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waiting write ended with %v, want the send deadline's timeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("waiting write cut %v after the send deadline was set; want about 300 ms", took)
	}
}

// SetSendSpan(d) is SetWriteDeadline(now+d): a span not above zero is a
// deadline already passed, and the next write fails at once, as
// SetWriteDeadline with a time not in the future makes it (the "past"
// case of TestAbsoluteDeadlineEndsSendDeadline). It must not leave the
// socket with no deadline at all.
func TestSendDeadlineSpanNotPositiveFailsAtOnce(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		t.Run(d.String(), func(t *testing.T) {
			rc, cl := sendPair(t) // the client reads nothing
			guard := time.AfterFunc(10*time.Second, func() { cl.Close() })
			defer guard.Stop()
			_ = (*sendDeadline)(rc).SetSendSpan(d)
			n, took, err := writeIn(rc, 64<<20)
			if !errors.Is(err, os.ErrDeadlineExceeded) || took > 5*time.Second {
				t.Fatalf("SetSendSpan(%v), client reading nothing: %d bytes in %v, %v; want a timeout at once", d, n, took, err)
			}
		})
	}
}
