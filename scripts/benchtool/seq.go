package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
)

// seqMain sends small requests one after another on one keep-alive TLS
// connection (or on -conns at once), for counting what the proxy does per
// request (scripts/callgrind.sh): -warm requests, then "READY" on stdout
// and a wait for a line on stdin (the counters are zeroed meanwhile), then
// -n requests and "DONE".
func seqMain(args []string) error {
	fs := flag.NewFlagSet("seq", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8443", "proxy `ADDR`")
	sni := fs.String("sni", "bench.nexmux.test", "server `NAME`")
	caFile := fs.String("ca", "", "CA certificate `FILE`")
	method := fs.String("method", http.MethodHead, "HEAD or GET")
	warm := fs.Int("warm", 300, "requests before READY")
	n := fs.Int("n", 3000, "requests after the line on stdin")
	conns := fs.Int("conns", 1, "keep-alive connections sending at once, each its share of -warm and -n")
	_ = fs.Parse(args)
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return errors.New("no certificate in " + *caFile)
	}
	// X25519 only and HTTP/1.1, as the bench client.
	cfg := &tls.Config{ServerName: *sni, RootCAs: roots,
		NextProtos: []string{"http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519}}
	req := *method + " /v2/app/manifests/latest HTTP/1.1\r\nHost: " + *sni + "\r\n" +
		"User-Agent: docker/27.3.1 go/go1.22.7 git-commit/4cf5afa kernel/6.1 os/linux arch/amd64\r\n" +
		"Accept: application/vnd.docker.distribution.manifest.v2+json\r\n" +
		"Authorization: Bearer DockerToken.0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f\r\n\r\n"
	type client struct {
		c  *tls.Conn
		br *bufio.Reader
	}
	clients := make([]client, max(*conns, 1))
	for i := range clients {
		c, err := tls.Dial("tcp", *addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = client{c, bufio.NewReader(c)}
	}
	one := func(cl client, k int) error {
		for range k {
			if _, err := io.WriteString(cl.c, req); err != nil {
				return err
			}
			resp, err := http.ReadResponse(cl.br, &http.Request{Method: *method})
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %s", resp.Status)
			}
		}
		return nil
	}
	// do sends k requests in all, spread over the connections at once.
	do := func(k int) error {
		errs := make(chan error, len(clients))
		for i, cl := range clients {
			share := k / len(clients)
			if i < k%len(clients) {
				share++
			}
			go func() { errs <- one(cl, share) }()
		}
		var first error
		for range clients {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	if err := do(*warm); err != nil {
		return err
	}
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	if err := do(*n); err != nil {
		return err
	}
	fmt.Println("DONE")
	return nil
}
