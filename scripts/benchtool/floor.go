package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof" // -pprof only: the profiling run (BENCH_PROFILE)
	"net/url"
	"sync"
	"time"
)

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte { return b.p.Get().([]byte) }

//lint:ignore SA6002 a slice header per Put is the price of the interface
func (b *bufferPool) Put(v []byte) { b.p.Put(v) }

// floorMain serves the Go floor: crypto/tls, net/http's server and
// httputil.ReverseProxy with an http.Transport, and nothing else: no
// ClientHello peek, routing, path checks, header rewriting, logging or
// metrics, and the library's buffer sizes (4 KiB Transport buffers, 32 KiB
// copies) instead of nexmux's. Per small request and per idle connection
// nexmux does everything this does and more, so this column is what those
// parts cost alone; for bulk transfers it shows what nexmux's batching
// (l7 bodywrite.go, mux batchSize) adds over the library defaults.
func floorMain(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "TLS `ADDR`")
	upstream := fs.String("upstream", "", "backend base `URL`, e.g. http://127.0.0.1:8081")
	prefix := fs.String("prefix", "/repository/bench", "path prefix prepended towards the backend (Nexus's route shape)")
	certFile := fs.String("cert", "", "certificate `FILE`")
	keyFile := fs.String("key", "", "key `FILE`")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on `ADDR` (the profiling run)")
	_ = fs.Parse(args)
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-upstream %q: want http://host:port", *upstream)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.URL.Path = *prefix + pr.In.URL.Path
			pr.Out.URL.RawPath = ""
			pr.Out.Host = pr.In.Host
		},
		// nexmux's pool sizes (http.DefaultTransport keeps 2 idle
		// connections per host); everything else stays default.
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     20 * time.Second,
			DisableCompression:  true,
		},
		// Without a pool ReverseProxy allocates (and zeroes) a 32 KiB copy
		// buffer per response, HEAD included: a floor has to avoid that.
		BufferPool: &bufferPool{p: sync.Pool{New: func() any { return make([]byte, 32<<10) }}},
		ErrorLog:   log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           rp,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 like every target
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	log.Printf("floor: https://%s -> %s%s", ln.Addr(), u, *prefix)
	return srv.Serve(tls.NewListener(ln, cfg))
}
