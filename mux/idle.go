package mux

import (
	"net"
	"time"
)

// DefaultPassthroughIdleTimeout closes a passthrough stream that carried no
// byte either way for this long (a backend that never answers, a client
// that went silent): long next to any TLS keep-alive a registry client or
// git holds, short next to forever.
const DefaultPassthroughIdleTimeout = 5 * time.Minute

// watchIdle closes the stream (end) once the backend socket up has carried
// no byte either way for idle. Activity is read from the kernel's counters
// of the socket (traffic), so the copy keeps splicing: nothing in Go sees
// the bytes. While acksOnly reports true (the bytes up receives are read
// only to be dropped), only what up's peer acknowledges counts. stop ends
// the watch.
func watchIdle(up net.Conn, idle time.Duration, acksOnly func() bool, end func()) (stop func()) {
	traffic, ok := trafficOf(up, acksOnly)
	if !ok || idle <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(max(idle/8, 5*time.Millisecond))
		defer tick.Stop()
		last, since := traffic(), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if n := traffic(); n != last {
					last, since = n, now
				} else if now.Sub(since) >= idle {
					end()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}
