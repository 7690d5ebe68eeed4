package mux

import (
	"io"
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
	c, collected := h2ConnWatched(t, r)
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
	waitCollected(t, collected, "closed revoked HTTP/2 connection still held 5 s later (--idle-timeout 1m)")
}
