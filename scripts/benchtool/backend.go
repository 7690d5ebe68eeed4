package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// patternSize is the period of the blob's content: the blob is this many
// pseudo-random bytes repeated, so client and backend agree on every byte
// without hashing a gigabyte (a pull can be verified with memcmp).
const patternSize = 1 << 20

// pattern returns the blob's repeating unit (the same bytes in every
// process: a fixed ChaCha8 seed).
func pattern() []byte {
	var seed [32]byte
	copy(seed[:], "nexmux bench blob pattern v1....")
	p := make([]byte, patternSize)
	_, _ = rand.NewChaCha8(seed).Read(p)
	return p
}

// blobDigest names the blob in URLs. It is the digest of one pattern period,
// not of the blob: the backend never checks it and hashing 1 GiB per run
// would only cost time.
func blobDigest() string {
	sum := sha256.Sum256(pattern())
	return "sha256:" + hex.EncodeToString(sum[:])
}

// manifest is what HEAD/GET of a manifest describes: a small schema 2
// manifest, as Nexus returns for `docker pull` of an image with one layer.
var manifest = []byte(`{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1469,
      "digest": "sha256:5e2b3c2b2f1e4a0f3d6c7b8a9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 1073741824,
         "digest": "sha256:9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0"
      }
   ]
}`)

var manifestDigest = func() string {
	sum := sha256.Sum256(manifest)
	return "sha256:" + hex.EncodeToString(sum[:])
}()

type backend struct {
	blobFile *os.File // kept referenced: its finalizer would close the memfd
	blobPath string   // a path that opens the blob with its own file offset
	blobSize int64
	uploads  atomic.Int64
	// node names this backend in X-Bench-Node, so the client can see
	// which of several upstream nodes served a pull.
	node string
}

func backendMain(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "plain HTTP `ADDR[,ADDR...]` (what a proxy forwards to, like Nexus's 8081)")
	tlsListen := fs.String("tls-listen", "", "TLS `ADDR` serving the same routes with no proxy in between (the limit)")
	certFile := fs.String("cert", "", "certificate `FILE` for -tls-listen")
	keyFile := fs.String("key", "", "key `FILE` for -tls-listen")
	size := fs.Int64("blob-size", 1<<30, "blob size in bytes (a multiple of 1 MiB)")
	node := fs.String("node", "", "`NAME` sent in X-Bench-Node on every answer (default: the -listen address)")
	_ = fs.Parse(args)
	if *size <= 0 || *size%patternSize != 0 {
		return fmt.Errorf("-blob-size %d: want a positive multiple of %d", *size, patternSize)
	}
	b := &backend{blobSize: *size, node: *node}
	cleanup, err := b.makeBlob()
	if err != nil {
		return err
	}
	defer cleanup()

	addrs := strings.Split(*listen, ",")
	errc := make(chan error, len(addrs)+1)
	for i, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		// Each further address is a node of its own in X-Bench-Node: one
		// process can then stand for several nodes (bench.sh
		// BENCH_NODE_PROCS=1 separates nexmux's cost of several nodes
		// from the cost of several backend processes).
		name := ln.Addr().String()
		if i == 0 && b.node == "" {
			b.node = name
		}
		h := http.Handler(b)
		if i > 0 {
			h = &nodeHandler{b: b, node: name}
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
		go func() { errc <- srv.Serve(ln) }()
		log.Printf("backend: http://%s (blob %d bytes, %s)", ln.Addr(), b.blobSize, blobDigest())
	}

	if *tlsListen != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return err
		}
		tln, err := net.Listen("tcp", *tlsListen)
		if err != nil {
			return err
		}
		tsrv := &http.Server{
			Handler:           b,
			ReadHeaderTimeout: 30 * time.Second,
			ErrorLog:          log.New(io.Discard, "", 0),
			// HTTP/1.1 only, like every proxied target here.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		go func() { errc <- tsrv.Serve(tls.NewListener(tln, cfg)) }()
		log.Printf("backend: https://%s", tln.Addr())
	}
	return <-errc
}

// makeBlob writes the blob into a memfd (page cache without a disk file) so
// the plain-HTTP side serves it with sendfile(2): the backend should cost as
// little CPU as possible, since it shares the two cores with the proxy under
// test and the client.
func (b *backend) makeBlob() (func(), error) {
	var f *os.File
	cleanup := func() {}
	if fd, err := unix.MemfdCreate("nexmux-bench-blob", 0); err == nil {
		f = os.NewFile(uintptr(fd), "memfd:nexmux-bench-blob")
		b.blobPath = fmt.Sprintf("/proc/self/fd/%d", fd)
	} else {
		if f, err = os.CreateTemp("", "nexmux-bench-blob-*"); err != nil {
			return nil, err
		}
		b.blobPath = f.Name()
		cleanup = func() { os.Remove(f.Name()) }
	}
	b.blobFile = f
	p := pattern()
	for off := int64(0); off < b.blobSize; off += patternSize {
		if _, err := f.Write(p); err != nil {
			cleanup()
			return nil, err
		}
	}
	return cleanup, nil
}

// ServeHTTP answers the Nexus route shape: an optional /repository/<repo>
// prefix (what a proxy sends; the direct TLS path sends it too), then the
// Registry API.
func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) { b.serve(w, r, b.node) }

// nodeHandler serves one listener of the backend under its own node name.
type nodeHandler struct {
	b    *backend
	node string
}

func (h *nodeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.b.serve(w, r, h.node) }

func (b *backend) serve(w http.ResponseWriter, r *http.Request, node string) {
	p := r.URL.Path
	w.Header().Set("X-Bench-Node", node)
	// Nexus's health endpoints: nexmux probes them on every node when it
	// has several (--upstream repeated); this node is always writable.
	if strings.HasSuffix(p, "/service/rest/v1/status") || strings.HasSuffix(p, "/service/rest/v1/status/writable") {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	if rest, ok := strings.CutPrefix(p, "/repository/"); ok {
		_, sub, found := strings.Cut(rest, "/")
		if !found {
			http.NotFound(w, r)
			return
		}
		p = "/" + sub
	}
	h := w.Header()
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	switch {
	case p == "/v2/" || p == "/v2":
		h.Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	case strings.Contains(p, "/blobs/uploads/"):
		b.upload(w, r, p)
	case strings.Contains(p, "/blobs/"):
		b.blob(w, r)
	case strings.Contains(p, "/manifests/"):
		h.Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		h.Set("Docker-Content-Digest", manifestDigest)
		h.Set("Etag", `"`+manifestDigest+`"`)
		h.Set("Content-Length", strconv.Itoa(len(manifest)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(manifest)
		}
	default:
		http.NotFound(w, r)
	}
}

func (b *backend) blob(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", blobDigest())
	h.Set("Content-Length", strconv.FormatInt(b.blobSize, 10))
	if r.Method == http.MethodHead {
		return
	}
	f, err := os.Open(b.blobPath)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	// *os.File on a plain TCP connection: http's ReadFrom uses sendfile.
	_, _ = io.Copy(w, f)
}

// upload discards and counts the body of POST/PATCH/PUT, answering like a
// registry so every proxy passes the answer through unchanged.
func (b *backend) upload(w http.ResponseWriter, r *http.Request, p string) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		m, err := r.Body.Read(buf)
		n += int64(m)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return // client or proxy gone
			}
			break
		}
	}
	h := w.Header()
	h.Set("X-Bench-Bytes", strconv.FormatInt(n, 10))
	prefix := "/repository/bench"
	switch r.Method {
	case http.MethodPost:
		id := strconv.FormatInt(b.uploads.Add(1), 10)
		h.Set("Docker-Upload-Uuid", id)
		h.Set("Location", prefix+strings.TrimSuffix(p, "/")+"/"+id)
		h.Set("Range", "0-0")
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
	case http.MethodPatch:
		h.Set("Location", prefix+p)
		h.Set("Range", "0-"+strconv.FormatInt(max(n-1, 0), 10))
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
	case http.MethodPut:
		h.Set("Location", prefix+p[:strings.Index(p, "/uploads/")]+"/"+r.URL.Query().Get("digest"))
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}
