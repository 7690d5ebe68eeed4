// Package conntrack keeps what a server needs for a graceful shutdown: its
// listeners, its connections and the goroutines serving them. mux and the
// SOCKS5 ingress share it.
package conntrack

import (
	"net"
	"sync"
)

// Tracker is usable at its zero value and safe for concurrent use.
type Tracker struct {
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closing   bool
	wg        sync.WaitGroup
}

// AddListener registers ln; false once Close has run (the caller closes ln).
func (t *Tracker) AddListener(ln net.Listener) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	if t.listeners == nil {
		t.listeners = map[net.Listener]struct{}{}
	}
	t.listeners[ln] = struct{}{}
	return true
}

// RemoveListener forgets ln.
func (t *Tracker) RemoveListener(ln net.Listener) {
	t.mu.Lock()
	delete(t.listeners, ln)
	t.mu.Unlock()
}

// AddConn registers c and the goroutine serving it, false once Close has
// run. The count is taken under the lock Close sets closing with, so it
// never races Idle's Wait. Every true is paired with one Done.
func (t *Tracker) AddConn(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	if t.conns == nil {
		t.conns = map[net.Conn]struct{}{}
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

// Go registers a goroutine without a connection of its own, as AddConn.
func (t *Tracker) Go() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.wg.Add(1)
	return true
}

// Done ends a goroutine registered by AddConn or Go.
func (t *Tracker) Done() { t.wg.Done() }

// RemoveConn forgets c (it is no longer closed by CloseConns).
func (t *Tracker) RemoveConn(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// HasConn reports whether c is registered.
func (t *Tracker) HasConn(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.conns[c]
	return ok
}

// Closing reports whether Close has run.
func (t *Tracker) Closing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

// Close stops accepting: no new listener, connection or goroutine is
// registered, and the registered listeners are closed.
func (t *Tracker) Close() {
	t.mu.Lock()
	t.closing = true
	for ln := range t.listeners {
		ln.Close()
	}
	t.mu.Unlock()
}

// CloseConns closes every registered connection.
func (t *Tracker) CloseConns() {
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
}

// EachConn calls f with every registered connection, under the lock.
func (t *Tracker) EachConn(f func(net.Conn)) {
	t.mu.Lock()
	for c := range t.conns {
		f(c)
	}
	t.mu.Unlock()
}

// Idle returns a channel closed once every registered goroutine is done.
// Call it after Close, so no goroutine can be added meanwhile.
func (t *Tracker) Idle() <-chan struct{} {
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	return done
}
