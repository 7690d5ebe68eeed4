// Package testnet has the loopback helpers tests share.
package testnet

import (
	"net"
	"testing"
	"time"
)

// Pair returns both ends of a real loopback TCP connection; both are
// closed when the test ends. Both carry a 30 s deadline, so code under
// test that wrongly waits fails instead of hanging the test binary
// (tests of deadlines set their own).
func Pair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept() // a failed accept shows as nil below
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		client.Close()
		t.Fatal("testnet: accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	deadline := time.Now().Add(30 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	return client, server
}
