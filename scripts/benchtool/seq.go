package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
)

// seqMain sends requests one after another, for counting what the proxy
// does per request (scripts/callgrind.sh): -warm requests, then "READY" on
// stdout and a wait for a line on stdin (the counters are zeroed
// meanwhile), then -n requests and "DONE". -kind says what a request is:
//
//	manifest   -method HEAD or GET of a manifest on keep-alive connections
//	handshake  a new TLS connection each: a full handshake (no session
//	           cache, so never resumed), one HEAD manifest, close
//	pull       GET of the backend's blob, its -blob-size bytes read and
//	           checked against the blob's pattern
//	push       PATCH of -push-size bytes (Content-Length, as the bench's
//	           push row sends it), then the PUT that commits the upload
//
// -conns connections send at once, each its share of -warm and -n.
// -sni-fmt FORMAT with -sni-n N names the server FORMAT % (i mod N) instead
// of -sni (the 10,000-route rows): i counts connections for keep-alive
// kinds, requests for handshake.
func seqMain(args []string) error {
	var o seqOpts
	fs := flag.NewFlagSet("seq", flag.ExitOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8443", "proxy `ADDR`")
	fs.StringVar(&o.sni, "sni", "bench.nexmux.test", "server `NAME`")
	fs.StringVar(&o.sniFmt, "sni-fmt", "", "server name `FORMAT` of name i, with -sni-n")
	fs.IntVar(&o.sniN, "sni-n", 0, "number of names from -sni-fmt (0: -sni only)")
	fs.StringVar(&o.caFile, "ca", "", "CA certificate `FILE`")
	fs.StringVar(&o.kind, "kind", "manifest", "manifest, handshake, pull or push")
	fs.StringVar(&o.method, "method", http.MethodHead, "HEAD or GET (-kind manifest)")
	fs.IntVar(&o.warm, "warm", 300, "requests before READY")
	fs.IntVar(&o.n, "n", 3000, "requests after the line on stdin")
	fs.IntVar(&o.conns, "conns", 1, "connections sending at once, each its share of -warm and -n")
	fs.Int64Var(&o.blobSize, "blob-size", 1<<20, "the backend's blob size in bytes (-kind pull)")
	fs.Int64Var(&o.pushSize, "push-size", 1<<20, "bytes per upload (-kind push)")
	_ = fs.Parse(args)
	return runSeq(o, os.Stdin, os.Stdout)
}

type seqOpts struct {
	addr, sni, sniFmt, caFile, kind, method string
	sniN, warm, n, conns                    int
	blobSize, pushSize                      int64
}

// seqHead is a request head as docker sends it; the manifest one is the
// same bytes for every kind, so manifest counts stay comparable.
func seqHead(method, path, host, extra string, length int64) []byte {
	s := method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" +
		"User-Agent: docker/27.3.1 go/go1.22.7 git-commit/4cf5afa kernel/6.1 os/linux arch/amd64\r\n" + extra +
		"Authorization: Bearer DockerToken.0b1c0d36-47a1-4a36-8a0e-1f2f3f4f5f6f\r\n"
	if length >= 0 {
		s += "Content-Length: " + strconv.FormatInt(length, 10) + "\r\n"
	}
	return []byte(s + "\r\n")
}

func runSeq(o seqOpts, stdin io.Reader, stdout io.Writer) error {
	switch o.kind {
	case "manifest":
		if o.method != http.MethodHead && o.method != http.MethodGet {
			return fmt.Errorf("-method %q: want HEAD or GET", o.method)
		}
	case "handshake":
		o.method = http.MethodHead
	case "pull", "push":
	default:
		return fmt.Errorf("-kind %q: want manifest, handshake, pull or push", o.kind)
	}
	roots, err := readRoots(o.caFile)
	if err != nil {
		return err
	}
	name := func(i int) string {
		if o.sniN > 0 {
			return fmt.Sprintf(o.sniFmt, i%o.sniN)
		}
		return o.sni
	}
	// The bench client's (X25519 only, HTTP/1.1); no ClientSessionCache,
	// so every handshake is a full one.
	tc := &tlsConfigs{roots: roots}
	config := func(host string) *tls.Config { return tc.config(host, true) }
	manifestHead := func(host string) []byte {
		return seqHead(o.method, "/v2/app/manifests/latest", host,
			"Accept: application/vnd.docker.distribution.manifest.v2+json\r\n", -1)
	}
	var pat []byte
	if o.kind == "pull" || o.kind == "push" {
		pat = pattern()
	}
	ctx := context.Background()
	var uploads atomic.Int64 // upload ids, unique over the connections
	one := func(c *httpConn, i int) error {
		switch o.kind {
		case "manifest":
			resp, err := c.request(ctx, manifestHead(c.host), nil, 0, o.method == http.MethodHead, nil)
			if err == nil && resp.Status != http.StatusOK {
				err = fmt.Errorf("status %d", resp.Status)
			}
			return err
		case "handshake":
			c.host = name(i)
			c.cfg = config(c.host)
			resp, err := c.request(ctx, manifestHead(c.host), nil, 0, true, nil)
			c.Close()
			if err == nil && resp.Status != http.StatusOK {
				err = fmt.Errorf("status %d", resp.Status)
			}
			return err
		case "pull":
			head := seqHead(http.MethodGet, "/v2/app/blobs/"+blobDigest(), c.host, "", -1)
			resp, err := c.request(ctx, head, nil, 0, false, pat)
			if err == nil && (resp.Status != http.StatusOK || resp.Length != o.blobSize) {
				err = fmt.Errorf("GET blob: status %d, %d of %d bytes", resp.Status, resp.Length, o.blobSize)
			}
			return err
		default: // push
			up := "/v2/app/blobs/uploads/" + strconv.FormatInt(uploads.Add(1), 10)
			patch := seqHead(http.MethodPatch, up, c.host, "Content-Type: application/octet-stream\r\n", o.pushSize)
			resp, err := c.request(ctx, patch, pat, o.pushSize, false, nil)
			if err == nil && (resp.Status != http.StatusAccepted || resp.Bytes != o.pushSize) {
				err = fmt.Errorf("PATCH: status %d, backend counted %d of %d bytes", resp.Status, resp.Bytes, o.pushSize)
			}
			if err != nil {
				return err
			}
			put := seqHead(http.MethodPut, up+"?digest="+blobDigest(), c.host, "", 0)
			if resp, err = c.request(ctx, put, nil, 0, false, nil); err == nil && resp.Status != http.StatusCreated {
				err = fmt.Errorf("PUT: status %d", resp.Status)
			}
			return err
		}
	}
	clients := make([]*httpConn, max(o.conns, 1))
	for i := range clients {
		host := name(i)
		clients[i] = newHTTPConn(&target{Addr: o.addr}, config(host), host)
		defer clients[i].Close()
	}
	// do sends k requests in all, spread over the connections at once;
	// next numbers the requests (the handshake kind's names).
	var next atomic.Int64
	do := func(k int) error {
		errs := make(chan error, len(clients))
		for i, c := range clients {
			share := k / len(clients)
			if i < k%len(clients) {
				share++
			}
			go func() {
				for range share {
					if err := one(c, int(next.Add(1)-1)); err != nil {
						errs <- err
						return
					}
				}
				// A redial would count a handshake in a keep-alive kind.
				if c.Redials > 0 {
					errs <- errors.New("the server closed a keep-alive connection")
					return
				}
				errs <- nil
			}()
		}
		var first error
		for range clients {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	if err := do(o.warm); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "READY")
	if _, err := bufio.NewReader(stdin).ReadString('\n'); err != nil {
		return err
	}
	if err := do(o.n); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "DONE")
	return nil
}
