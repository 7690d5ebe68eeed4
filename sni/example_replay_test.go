package sni_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/sni"
)

// replayConn reads the bytes sni.ReadClientHello took (hello.Raw) before
// the rest of the connection; everything else is the connection's own.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Once the route is chosen, the hello that routing already read is handed
// to crypto/tls again ahead of the rest of the stream, so the handshake sees
// the stream from its first byte.
func Example_replay() {
	ca, err := certs.NewCA("example CA")
	if err != nil {
		log.Fatal(err)
	}
	cert, err := ca.IssueTLS("team-a.example.com")
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		hello, err := sni.ReadClientHello(c)
		if err != nil {
			return
		}
		srv := tls.Server(&replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(hello.Raw), c)}, &tls.Config{Certificates: []tls.Certificate{cert}})
		_, _ = io.Copy(srv, srv) // echo
	}()

	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "team-a.example.com", RootCAs: ca.Pool()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		log.Fatal(err)
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(c, echo); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("handshake done, echo %q\n", echo)
	// Output:
	// handshake done, echo "ping"
}
