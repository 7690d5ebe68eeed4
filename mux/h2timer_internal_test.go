package mux

import (
	"crypto/tls"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// An HTTP/2 connection's --header-timeout timer is stopped when the
// connection closes: it held the closed connection (its TLS state and
// buffers, the ClientHello, the configuration it was routed under) until
// it fired, so clients that open and close connections quickly kept
// --header-timeout's worth of them in memory.
func TestHTTP2HeaderTimerLetsClosedConnectionGo(t *testing.T) {
	r := newAcceptRig(t, Options{HeaderTimeout: time.Minute}, false)
	c, collected := h2ConnWatched(t, r)
	c.Close()
	waitCollected(t, collected, "closed HTTP/2 connection still held 5 s later (--header-timeout 1m)")
}

// h2ConnWatched opens an HTTP/2 connection to r's server (preface and
// SETTINGS sent) and reports, once it reached http.Server, when the
// server's side of it has been garbage-collected.
func h2ConnWatched(t *testing.T, r *acceptRig) (*tls.Conn, *atomic.Bool) {
	t.Helper()
	go r.s.Serve(r.ln)
	c, err := tls.Dial("tcp", r.ln.Addr().String(), &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: r.ca.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	collected := new(atomic.Bool)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.s.live.mu.Lock()
		for sc := range r.s.live.http {
			runtime.AddCleanup(sc.(*tls.Conn), func(b *atomic.Bool) { b.Store(true) }, collected)
		}
		n := len(r.s.live.http)
		r.s.live.mu.Unlock()
		if n > 0 {
			return c, collected
		}
		if time.Now().After(deadline) {
			t.Fatal("the HTTP/2 connection never reached http.Server")
		}
	}
}

// waitCollected fails with msg unless collected turns true within 5 s.
func waitCollected(t *testing.T, collected *atomic.Bool, msg string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !collected.Load(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		runtime.GC()
	}
}
