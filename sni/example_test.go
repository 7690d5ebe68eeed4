package sni_test

import (
	"crypto/tls"
	"fmt"
	"log"
	"net"

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
