package socks5_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/mux"
)

// greet opens a session and sends the SOCKS5 greeting (no login); it
// returns the connection, and whether the method reply came (false: the
// ingress closed it at accept).
func greet(t *testing.T, addr string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return c, false
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		return c, false
	}
	_ = c.SetDeadline(time.Time{})
	return c, true
}

// waitOpen waits until the router counts want --max-conns places.
func waitOpen(t *testing.T, st *stack, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := st.router.Open()
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d --max-conns places taken, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A session without a stream yet holds a descriptor (its socket), so it
// takes a --max-conns place from accept: beyond the limit a client is
// closed at once and counted as max_conns, as on the TLS listener. Its
// CONNECT takes the stream's two places with that one handed over, and
// every place comes back exactly once, whichever way the session ends.
func TestPendingSessionsTakeMaxConnsPlaces(t *testing.T) {
	st := start(t, config{maxConns: 4})
	var silent []net.Conn
	for i := range 4 {
		c, ok := greet(t, st.socksAddr)
		if !ok {
			t.Fatalf("silent session %d of 4 closed under --max-conns 4", i+1)
		}
		silent = append(silent, c)
	}
	if _, ok := greet(t, st.socksAddr); ok {
		t.Fatal("a fifth silent session greeted beside four under --max-conns 4: each holds a descriptor and no place")
	}
	if n := st.refusedFor(mux.ReasonMaxConns); n != 1 {
		t.Errorf("%d max_conns refusals counted, want 1", n)
	}
	if !strings.Contains(st.logs.String(), "reason="+mux.ReasonMaxConns) {
		t.Errorf("no max_conns line:\n%s", st.logs.String())
	}
	waitOpen(t, st, 4)

	// One place free: a session fits, its CONNECT (a second place) does
	// not, and the refused session gives its place back.
	silent[3].Close()
	waitOpen(t, st, 3)
	code, c, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	refusedInSOCKS(t, code, c, err)
	waitOpen(t, st, 3)

	// Two places free: a stream, holding exactly two, its session's
	// place among them.
	silent[2].Close()
	waitOpen(t, st, 2)
	code, held, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT with two places free: reply %d, %v", code, err)
	}
	waitOpen(t, st, 4)
	if _, ok := greet(t, st.socksAddr); ok {
		t.Fatal("a session greeted with two silent sessions and a stream holding --max-conns 4")
	}
	if body := tlsGet(t, st, held); !strings.HasPrefix(body, held.LocalAddr().String()+" ") {
		t.Fatalf("stream: %q", body)
	}
	held.Close()
	waitOpen(t, st, 2)
	silent[0].Close()
	silent[1].Close()
	waitOpen(t, st, 0)
	// Given back once: nothing more after everything has ended.
	st.shutdown()
	if n, _ := st.router.Open(); n != 0 {
		t.Fatalf("%d --max-conns places after shutdown, want 0", n)
	}
}
