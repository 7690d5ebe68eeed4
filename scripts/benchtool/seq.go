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
// connection, for counting what the proxy does per request
// (scripts/callgrind.sh): -warm requests, then "READY" on stdout and a
// wait for a line on stdin (the counters are zeroed meanwhile), then -n
// requests and "DONE".
func seqMain(args []string) error {
	fs := flag.NewFlagSet("seq", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8443", "proxy `ADDR`")
	sni := fs.String("sni", "bench.nexmux.test", "server `NAME`")
	caFile := fs.String("ca", "", "CA certificate `FILE`")
	method := fs.String("method", http.MethodHead, "HEAD or GET")
	warm := fs.Int("warm", 300, "requests before READY")
	n := fs.Int("n", 3000, "requests after the line on stdin")
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
	c, err := tls.Dial("tcp", *addr, &tls.Config{ServerName: *sni, RootCAs: roots,
		NextProtos: []string{"http/1.1"}, CurvePreferences: []tls.CurveID{tls.X25519}})
	if err != nil {
		return err
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := *method + " /v2/app/manifests/latest HTTP/1.1\r\nHost: " + *sni + "\r\n" +
		"User-Agent: docker/27.3.1 go/go1.22.7 git-commit/4cf5afa kernel/6.1 os/linux arch/amd64\r\n" +
		"Accept: application/vnd.docker.distribution.manifest.v2+json\r\n" +
		"Authorization: Bearer DockerToken.0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f\r\n\r\n"
	do := func(k int) error {
		for range k {
			if _, err := io.WriteString(c, req); err != nil {
				return err
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: *method})
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
