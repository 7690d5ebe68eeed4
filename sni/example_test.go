package sni_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/sni"
)

// A listener reads a real client's ClientHello, learns the server name it
// asked for, and refuses it with a TLS alert the client can explain.
func ExampleReadClientHello() {
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
			fmt.Println("server:", err)
			return
		}
		fmt.Println("server name:", hello.ServerName)
		fmt.Println("protocols:", hello.ALPN)
		_ = sni.WriteAlert(c, sni.AlertUnrecognizedName)
	}()

	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		ServerName: "Team-A.Example.com",
		NextProtos: []string{"h2", "http/1.1"},
	})
	fmt.Println("client:", err)
	// Output:
	// server name: team-a.example.com
	// protocols: [h2 http/1.1]
	// client: remote error: tls: unrecognized name
}

// Once the route is chosen, a ReplayConn hands crypto/tls the hello that
// routing already read, so the handshake sees the stream from its first
// byte.
func ExampleNewReplayConn() {
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
		srv := tls.Server(sni.NewReplayConn(c, hello.Raw), &tls.Config{Certificates: []tls.Certificate{cert}})
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
