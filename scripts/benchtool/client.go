package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// The load generator is a minimal HTTP/1.1 client on crypto/tls rather than
// net/http: it allocates nothing per request and spends no goroutines on a
// connection, so on a two-core machine it leaves as much CPU as possible to
// the server under test, and it is the same client for every target.

// target is one server under test.
type target struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`   // 127.0.0.1:port
	Host   string `json:"host"`   // SNI and Host header
	Prefix string `json:"prefix"` // path before /v2/ ("" through a proxy, "/repository/bench" direct)
	PID    int    `json:"pid"`    // process (or nginx master) whose RSS is measured; 0: none
	Tree   bool   `json:"tree"`   // count the RSS of PID's children too (nginx workers)
	// Metrics is nexmux's --metrics-listen URL, read for Go heap figures.
	Metrics string `json:"metrics,omitempty"`
	// Hosts, when > 0, spreads connections over Hosts names made from
	// HostFormat (the 10,000-route table).
	Hosts      int    `json:"hosts,omitempty"`
	HostFormat string `json:"host_format,omitempty"`
	// Nodes is how many --upstream nodes this nexmux has (the node-count
	// comparison); 0: one.
	Nodes int `json:"nodes,omitempty"`
	// PProf is the base URL of the target's net/http/pprof (the profiling
	// run only).
	PProf string `json:"-"`
}

func (t *target) host(i int) string {
	if t.Hosts > 0 {
		return fmt.Sprintf(t.HostFormat, i%t.Hosts)
	}
	return t.Host
}

// tlsConfigs holds the client's TLS settings: TLS 1.3, X25519 (the group
// nginx with OpenSSL 3.0 negotiates, so every server does the same key
// exchange), HTTP/1.1 only, no session cache (every handshake is full).
type tlsConfigs struct {
	roots *x509.CertPool
}

// readRoots is the CA certificates in the PEM file name.
func readRoots(name string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", name)
	}
	return roots, nil
}

func (c *tlsConfigs) config(host string, verify bool) *tls.Config {
	return &tls.Config{
		ServerName:       host,
		RootCAs:          c.roots,
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
		NextProtos:       []string{"http/1.1"},
		// Verification is the client's cost, not the server's: loops that
		// measure servers skip it after one verified handshake per target.
		InsecureSkipVerify: !verify,
	}
}

var dialer = &net.Dialer{Timeout: 10 * time.Second}

// sourceDialer dials from 127.0.0.<i>: the client closes first, so every
// closed connection holds its 4-tuple in TIME_WAIT for a minute. Spreading
// the handshake loop over source addresses gives it 28,000 ephemeral ports
// per address instead of 28,000 in all; without that the kernel's search
// for a free port slows connect() down within a few rounds.
func sourceDialer(i int) *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(2+i%250))}}
}

func dialTLS(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	return dialTLSFrom(ctx, dialer, addr, cfg)
}

func dialTLSFrom(ctx context.Context, d *net.Dialer, addr string, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

// httpConn is one keep-alive connection.
type httpConn struct {
	t    *target
	cfg  *tls.Config
	host string
	tc   *tls.Conn
	br   *bufio.Reader
	buf  []byte // scratch for discarding bodies
	// bufSize is the read buffer's size (default 64 KiB).
	bufSize int
	// Redials counts reconnections after the server closed a keep-alive
	// connection (nginx's keepalive_requests, idle timeouts).
	Redials int
}

func newHTTPConn(t *target, cfg *tls.Config, host string) *httpConn {
	return &httpConn{t: t, cfg: cfg, host: host}
}

func (c *httpConn) connect(ctx context.Context) error {
	tc, err := dialTLS(ctx, c.t.Addr, c.cfg)
	if err != nil {
		return err
	}
	c.tc = tc
	if c.br == nil {
		if c.bufSize == 0 {
			c.bufSize = 64 << 10
		}
		c.br = bufio.NewReaderSize(tc, c.bufSize)
	} else {
		c.br.Reset(tc)
	}
	return nil
}

func (c *httpConn) Close() {
	if c.tc != nil {
		c.tc.Close()
		c.tc = nil
	}
}

// response is what the client keeps of an answer.
type response struct {
	Status   int
	Length   int64  // body bytes read
	Bytes    int64  // X-Bench-Bytes: what the backend counted of an upload
	Node     string // X-Bench-Node: which backend answered
	close    bool
	cl       int64
	chunked  bool
	location bool
}

// request sends head (a complete request head, CRLFCRLF included) and then
// bodyLen bytes of body cycling over bodySrc, and reads the answer. A request
// on a reused connection that the server had already closed is retried once
// on a new connection, as browsers and docker do.
func (c *httpConn) request(ctx context.Context, head []byte, bodySrc []byte, bodyLen int64, isHead bool, verify []byte) (response, error) {
	for attempt := 0; ; attempt++ {
		fresh := c.tc == nil
		if fresh {
			if err := c.connect(ctx); err != nil {
				return response{}, err
			}
		}
		resp, sent, err := c.roundTrip(head, bodySrc, bodyLen, isHead, verify)
		if err == nil {
			if resp.close {
				c.Close()
			}
			return resp, nil
		}
		c.Close()
		if fresh || sent || attempt > 0 {
			return resp, err
		}
		c.Redials++
	}
}

// roundTrip reports sent = true once any response byte arrived: only a
// request that saw nothing back may be retried.
func (c *httpConn) roundTrip(head []byte, bodySrc []byte, bodyLen int64, isHead bool, verify []byte) (resp response, sent bool, err error) {
	if _, err = c.tc.Write(head); err != nil {
		return resp, false, err
	}
	for left := bodyLen; left > 0; {
		chunk := bodySrc
		if int64(len(chunk)) > left {
			chunk = chunk[:left]
		}
		if _, err = c.tc.Write(chunk); err != nil {
			return resp, true, err
		}
		left -= int64(len(chunk))
	}
	if err = c.readHead(&resp); err != nil {
		return resp, resp.Status != 0, err
	}
	if isHead || resp.Status == 204 || resp.Status == 304 || resp.Status/100 == 1 {
		return resp, true, nil
	}
	if resp.Status != 200 {
		verify = nil // an error page is not the blob; the caller reports the status
	}
	err = c.readBody(&resp, verify)
	return resp, true, err
}

var (
	hdrContentLength    = []byte("content-length")
	hdrTransferEncoding = []byte("transfer-encoding")
	hdrConnection       = []byte("connection")
	hdrBenchBytes       = []byte("x-bench-bytes")
	hdrLocation         = []byte("location")
	hdrBenchNode        = []byte("x-bench-node")
)

func (c *httpConn) readHead(resp *response) error {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return fmt.Errorf("bad status line %q", line)
	}
	st, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return fmt.Errorf("bad status line %q", line)
	}
	resp.Status = st
	resp.cl = -1
	resp.close = line[7] == '0' // HTTP/1.0 closes unless told otherwise
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return nil
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, hdrContentLength):
			resp.cl, err = strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, hdrTransferEncoding):
			resp.chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, hdrConnection):
			if bytes.EqualFold(v, []byte("close")) {
				resp.close = true
			} else if bytes.EqualFold(v, []byte("keep-alive")) {
				resp.close = false
			}
		case bytes.EqualFold(k, hdrBenchBytes):
			resp.Bytes, _ = strconv.ParseInt(string(v), 10, 64)
		case bytes.EqualFold(k, hdrLocation):
			resp.location = true
		case bytes.EqualFold(k, hdrBenchNode):
			resp.Node = string(v)
		}
	}
}

func (c *httpConn) readBody(resp *response, verify []byte) error {
	if c.buf == nil {
		c.buf = make([]byte, 256<<10)
	}
	switch {
	case resp.chunked:
		for {
			line, err := c.br.ReadSlice('\n')
			if err != nil {
				return err
			}
			line = bytes.TrimRight(line, "\r\n")
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i]
			}
			n, err := strconv.ParseInt(string(line), 16, 64)
			if err != nil {
				return fmt.Errorf("bad chunk size %q", line)
			}
			if n == 0 {
				// trailers, then the final CRLF
				for {
					l, err := c.br.ReadSlice('\n')
					if err != nil {
						return err
					}
					if len(bytes.TrimRight(l, "\r\n")) == 0 {
						return nil
					}
				}
			}
			if err := c.discard(resp, n, verify); err != nil {
				return err
			}
			if _, err := c.br.Discard(2); err != nil {
				return err
			}
		}
	case resp.cl >= 0:
		return c.discard(resp, resp.cl, verify)
	default:
		resp.close = true
		err := c.discard(resp, 1<<62, verify)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		return err
	}
}

// discard reads n body bytes; with verify set, it checks them against the
// blob pattern (the body starts at pattern offset resp.Length).
func (c *httpConn) discard(resp *response, n int64, verify []byte) error {
	for n > 0 {
		b := c.buf
		if int64(len(b)) > n {
			b = b[:n]
		}
		m, err := c.br.Read(b)
		if verify != nil && m > 0 {
			if err := checkPattern(verify, resp.Length, b[:m]); err != nil {
				return err
			}
		}
		resp.Length += int64(m)
		n -= int64(m)
		if err != nil {
			if err == io.EOF && n > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func checkPattern(p []byte, off int64, got []byte) error {
	for len(got) > 0 {
		i := int(off % int64(len(p)))
		n := min(len(got), len(p)-i)
		if !bytes.Equal(got[:n], p[i:i+n]) {
			return fmt.Errorf("body differs from the blob within bytes %d-%d", off, off+int64(n))
		}
		got, off = got[n:], off+int64(n)
	}
	return nil
}

// requestHead builds a request head. Host is the bare name for every target
// (as docker sends it for port 443), so every proxy sees the same request.
func requestHead(method, path, host string, contentLength int64, extra string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: nexmux-bench/1\r\n", method, path, host)
	if contentLength >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", contentLength)
	}
	b.WriteString(extra)
	b.WriteString("\r\n")
	return b.Bytes()
}
