package mux

import (
	"crypto/tls"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/route"
)

// A revoked HTTP/2 connection that the client then closes is let go at
// once: the timers that half-close it and close it by --idle-timeout held
// it (TLS state and buffers, the configuration it was routed under) for
// the whole --idle-timeout after it was gone.
func TestRevokedHTTP2ConnectionLetGoWhenClosed(t *testing.T) {
	r := newAcceptRig(t, Options{HeaderTimeout: time.Minute, IdleTimeout: time.Minute}, false)
	go r.s.Serve(r.ln)
	c, err := tls.Dial("tcp", r.ln.Addr().String(), &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: r.ca.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	var collected atomic.Bool
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.s.live.mu.Lock()
		for sc := range r.s.live.http {
			runtime.AddCleanup(sc.(*tls.Conn), func(*atomic.Bool) { collected.Store(true) }, &collected)
		}
		n := len(r.s.live.http)
		r.s.live.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the HTTP/2 connection never reached http.Server")
		}
	}
	tab, err := route.Build(route.Spec{Routes: []string{"team-b.nexmux.test=team-b"}})
	if err != nil {
		t.Fatal(err)
	}
	r.s.Update(&State{Table: tab, Certs: r.st.Certs})
	// The client reads to the close_notify the revocation sends, then
	// closes its side.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("revoked connection not ended by close_notify: %v", err)
	}
	c.Close()
	for deadline := time.Now().Add(5 * time.Second); !collected.Load(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("closed revoked HTTP/2 connection still held 5 s later (--idle-timeout 1m)")
		}
		runtime.GC()
	}
}
