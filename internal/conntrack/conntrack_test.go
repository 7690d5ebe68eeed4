package conntrack

import (
	"net"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// After Close nothing new is registered, listeners are closed, Idle waits
// for the registered goroutines and CloseConns ends their connections.
func TestCloseStopsAcceptingAndDrains(t *testing.T) {
	var tr Tracker
	ln := testnet.Listen(t)
	if !tr.AddListener(ln) {
		t.Fatal("AddListener before Close = false")
	}
	a, b := net.Pipe()
	defer b.Close()
	if !tr.AddConn(a) || !tr.HasConn(a) {
		t.Fatal("AddConn before Close failed")
	}
	ended := make(chan struct{})
	go func() {
		defer tr.Done()
		buf := make([]byte, 1)
		_, _ = a.Read(buf) // returns once CloseConns closes a
		close(ended)
	}()
	tr.Close()
	if !tr.Closing() {
		t.Error("Closing = false after Close")
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("listener still accepts after Close")
	}
	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	if tr.AddConn(c) || tr.Go() || tr.AddListener(testnet.Listen(t)) {
		t.Error("registered something after Close")
	}
	idle := tr.Idle()
	select {
	case <-idle:
		t.Fatal("Idle before the goroutine ended")
	case <-time.After(50 * time.Millisecond):
	}
	tr.CloseConns()
	<-ended
	<-idle
	tr.RemoveConn(a)
	if tr.HasConn(a) {
		t.Error("HasConn after RemoveConn")
	}
}
