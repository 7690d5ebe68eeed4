// Package h1rt is a pooled, synchronous HTTP/1.1 client round-tripper built
// from the standard library's own framing: (*http.Request).Write and
// http.ReadResponse. Unlike http.Transport it runs no read-loop or
// write-loop goroutine per connection: the calling goroutine writes the
// request and reads the response head, and the response body hands the
// connection back to the pool at EOF. Only a request with a body gets a
// goroutine, which writes while the caller already waits for an answer, so
// an early 401/413 comes back before the body is sent.
package h1rt

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Transport. Zero values take the defaults named.
type Options struct {
	// Dial connects to host:port (required).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is cloned for https:// hosts (nil: defaults).
	TLSConfig *tls.Config
	// MaxIdleConns bounds idle connections over all hosts (default 1024).
	MaxIdleConns int
	// MaxIdleConnsPerHost bounds one host's idle connections (default 256).
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes connections idle this long (default 20 s).
	IdleConnTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a response head after the
	// request is written (0: none).
	ResponseHeaderTimeout time.Duration
	// BufferSize sizes each connection's bufio reader and writer (default 32 KiB).
	BufferSize int
}

// max1xx is how many interim responses one request may see (as net/http).
const max1xx = 5

// Transport is an http.RoundTripper for HTTP/1.1 servers.
type Transport struct {
	o Options

	mu       sync.Mutex
	idle     map[string][]*conn // per host, oldest first
	nIdle    int
	sweeping bool
}

// New returns a Transport.
func New(o Options) *Transport {
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 1024
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 256
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 20 * time.Second
	}
	if o.BufferSize <= 0 {
		o.BufferSize = 32 << 10
	}
	return &Transport{o: o, idle: map[string][]*conn{}}
}

var _ http.RoundTripper = (*Transport)(nil)

type conn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	key    string
	idleAt time.Time
	reused bool
}

var (
	errUnsupportedScheme = errors.New("h1rt: unsupported protocol scheme")
	errTooMany1xx        = errors.New("h1rt: too many 1xx informational responses")
	errSwitching         = errors.New("h1rt: 101 Switching Protocols is not supported")
	errHeaderTimeout     = errors.New("h1rt: timeout awaiting response headers")
)

// RoundTrip sends r and returns the response; its body streams from the
// connection, which goes back to the pool once the body is read to EOF.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL == nil || r.URL.Host == "" {
		closeReq(r)
		return nil, errors.New("h1rt: request without a host")
	}
	if r.URL.Scheme != "http" && r.URL.Scheme != "https" {
		closeReq(r)
		return nil, fmt.Errorf("%w %q", errUnsupportedScheme, r.URL.Scheme)
	}
	key := r.URL.Scheme + "://" + hostPort(r.URL.Scheme, r.URL.Host)
	ctx := r.Context()
	hasBody := r.Body != nil && r.Body != http.NoBody
	for {
		pc, err := t.get(ctx, key, r)
		if err != nil {
			closeReq(r)
			return nil, err
		}
		resp, err, retry := t.roundTrip(ctx, pc, r, hasBody)
		if err == nil {
			return resp, nil
		}
		if !retry {
			return nil, err
		}
		// A pooled connection the server had closed: nothing of the
		// request was processed, go again on a fresh one.
	}
}

// get returns an idle connection to key or dials one.
func (t *Transport) get(ctx context.Context, key string, r *http.Request) (*conn, error) {
	now := time.Now()
	for {
		t.mu.Lock()
		l := t.idle[key]
		if len(l) == 0 {
			t.mu.Unlock()
			break
		}
		pc := l[len(l)-1]
		l[len(l)-1] = nil
		t.idle[key] = l[:len(l)-1]
		t.nIdle--
		t.mu.Unlock()
		if now.Sub(pc.idleAt) >= t.o.IdleConnTimeout {
			pc.c.Close()
			continue
		}
		// A request that may not be sent twice checks first that the
		// server has not closed the connection while it sat idle.
		if !replayable(r) && !alive(pc.c) {
			pc.c.Close()
			continue
		}
		return pc, nil
	}
	return t.dial(ctx, key)
}

func (t *Transport) dial(ctx context.Context, key string) (*conn, error) {
	scheme, addr, _ := strings.Cut(key, "://")
	c, err := t.o.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if scheme == "https" {
		cfg := t.o.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			h, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = h
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	return &conn{c: c, br: bufio.NewReaderSize(c, t.o.BufferSize), bw: bufio.NewWriterSize(c, t.o.BufferSize), key: key}, nil
}

// roundTrip runs one exchange on pc. retry says the request may go again
// on another connection (pc was pooled and died before answering).
func (t *Transport) roundTrip(ctx context.Context, pc *conn, r *http.Request, hasBody bool) (*http.Response, error, bool) {
	stop := context.AfterFunc(ctx, func() { pc.c.Close() })
	ex := &exchange{t: t, pc: pc, stop: stop}
	if !hasBody {
		err := r.Write(pc.bw)
		if err == nil {
			err = pc.bw.Flush()
		}
		if err != nil {
			stop()
			pc.c.Close()
			return nil, t.fail(ctx, err), pc.reused && replayable(r) && ctx.Err() == nil
		}
		if d := t.o.ResponseHeaderTimeout; d > 0 {
			pc.c.SetReadDeadline(time.Now().Add(d))
		}
	} else {
		ex.wrote = make(chan error, 1)
		go ex.write(r)
	}
	resp, err := ex.readHead(r)
	if err != nil {
		stop()
		pc.c.Close()
		werr := ex.bodyErr()
		if werr != nil {
			return nil, werr, false
		}
		if errors.Is(err, errHeaderTimeout) {
			return nil, err, false
		}
		// Nothing came back on a connection that served before: the
		// server closed it while idle (or as we wrote).
		retry := pc.reused && ex.nothingRead && replayable(r) && ctx.Err() == nil
		return nil, t.fail(ctx, err), retry
	}
	ex.keep = !resp.Close && !r.Close
	if resp.Body == http.NoBody {
		ex.finish(true)
		return resp, nil, false
	}
	resp.Body = &body{ex: ex, rc: resp.Body}
	return resp, nil, false
}

// fail returns the error to report: the context's cause if it was
// cancelled (the connection was closed for it), else err.
func (t *Transport) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// exchange is one request and response on a connection.
type exchange struct {
	t    *Transport
	pc   *conn
	stop func() bool // stops the context watch; false: it closed pc

	// Set with a request body: the writer's result, and whether the
	// response head came before the write finished (the header timeout
	// starts once the body is written, as in net/http).
	wrote    chan error
	mu       sync.Mutex
	headDone bool
	werr     error // the write's result once known
	written  bool
	bodyFail error // reading the request body failed

	nothingRead bool // the head read failed before any byte arrived
	keep        bool // the response allows reuse
	once        sync.Once
}

// write sends r (headers and body) and reports on ex.wrote.
func (ex *exchange) write(r *http.Request) {
	rb := &reqBody{rc: r.Body}
	out := *r
	out.Body = rb
	err := out.Write(ex.pc.bw)
	if err == nil {
		err = ex.pc.bw.Flush()
	}
	ex.mu.Lock()
	ex.written, ex.werr = true, err
	if err == nil && !ex.headDone {
		if d := ex.t.o.ResponseHeaderTimeout; d > 0 {
			ex.pc.c.SetReadDeadline(time.Now().Add(d))
		}
	}
	if rb.err != nil || err != nil && !rb.wfailed && shortBody(err) {
		// The server still waits for body bytes that will never come:
		// end the exchange so the reader stops waiting.
		ex.bodyFail = err
		if rb.err != nil {
			ex.bodyFail = rb.err
		}
		ex.pc.c.Close()
	}
	ex.mu.Unlock()
	ex.wrote <- err
}

// bodyErr is the request body's read error, if the write is over and
// failed because of it.
func (ex *exchange) bodyErr() error {
	if ex.wrote == nil {
		return nil
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return ex.bodyFail
}

// readHead reads the response head, skipping interim 1xx responses.
func (ex *exchange) readHead(r *http.Request) (*http.Response, error) {
	br := ex.pc.br
	for n := 0; ; n++ {
		if _, err := br.Peek(1); err != nil {
			ex.nothingRead = n == 0
			return nil, ex.headErr(err)
		}
		resp, err := http.ReadResponse(br, r)
		if err != nil {
			return nil, ex.headErr(err)
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errSwitching
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			if n >= max1xx {
				return nil, errTooMany1xx
			}
			continue
		}
		if d := ex.t.o.ResponseHeaderTimeout; d > 0 {
			if ex.wrote != nil {
				ex.mu.Lock()
				ex.headDone = true
				if ex.written {
					ex.pc.c.SetReadDeadline(time.Time{})
				}
				ex.mu.Unlock()
			} else {
				ex.pc.c.SetReadDeadline(time.Time{})
			}
		}
		return resp, nil
	}
}

func (ex *exchange) headErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errHeaderTimeout
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// finish ends the exchange once: the connection goes back to the pool if
// the whole response was read, the request fully written, the context
// watch never fired, and nothing unsolicited follows; else it is closed.
func (ex *exchange) finish(clean bool) {
	ex.once.Do(func() {
		pc := ex.pc
		if !ex.stop() || !clean || !ex.keep || pc.br.Buffered() != 0 {
			pc.c.Close()
			return
		}
		if ex.wrote == nil {
			ex.t.put(pc)
			return
		}
		select {
		case err := <-ex.wrote:
			ex.putIf(err == nil)
		default:
			// The answer is complete but the writer has not reported:
			// it is about to, or the server answered early and the
			// body is still going out.
			go ex.awaitWrite()
		}
	})
}

// maxWriteWait is how long a complete answer waits for its request's
// write to finish before the connection is given up (net/http's value).
const maxWriteWait = 50 * time.Millisecond

func (ex *exchange) awaitWrite() {
	t := time.NewTimer(maxWriteWait)
	defer t.Stop()
	select {
	case err := <-ex.wrote:
		ex.putIf(err == nil)
	case <-t.C:
		ex.pc.c.Close()
	}
}

func (ex *exchange) putIf(ok bool) {
	if ok {
		ex.t.put(ex.pc)
	} else {
		ex.pc.c.Close()
	}
}

// put returns pc to the pool, or closes it if the pool is full.
func (t *Transport) put(pc *conn) {
	pc.reused = true
	pc.idleAt = time.Now()
	t.mu.Lock()
	l := t.idle[pc.key]
	if len(l) >= t.o.MaxIdleConnsPerHost || t.nIdle >= t.o.MaxIdleConns {
		t.mu.Unlock()
		pc.c.Close()
		return
	}
	t.idle[pc.key] = append(l, pc)
	t.nIdle++
	if !t.sweeping {
		t.sweeping = true
		time.AfterFunc(t.o.IdleConnTimeout, t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes connections idle past IdleConnTimeout (the server would
// close them soon after) and runs again while any stay pooled.
func (t *Transport) sweep() {
	now := time.Now()
	var old []*conn
	next := t.o.IdleConnTimeout
	t.mu.Lock()
	for k, l := range t.idle {
		i := 0
		for i < len(l) && now.Sub(l[i].idleAt) >= t.o.IdleConnTimeout {
			old = append(old, l[i])
			i++
		}
		if i > 0 {
			l = append(l[:0], l[i:]...)
			clear(t.idle[k][len(l):])
			t.nIdle -= i
		}
		if len(l) == 0 {
			delete(t.idle, k)
			continue
		}
		t.idle[k] = l
		if d := t.o.IdleConnTimeout - now.Sub(l[0].idleAt); d < next {
			next = d
		}
	}
	if t.nIdle > 0 {
		time.AfterFunc(next, t.sweep)
	} else {
		t.sweeping = false
	}
	t.mu.Unlock()
	for _, pc := range old {
		pc.c.Close()
	}
}

// CloseIdleConnections closes every pooled connection.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var all []*conn
	for _, l := range t.idle {
		all = append(all, l...)
	}
	clear(t.idle)
	t.nIdle = 0
	t.mu.Unlock()
	for _, pc := range all {
		pc.c.Close()
	}
}

// body is a response body that ends its exchange: at EOF (connection
// reusable), on a read error or an early Close (connection closed, never
// drained: the rest may be a 1 GiB blob). Close may come from another
// goroutine while a Read waits: closing the connection ends that Read.
type body struct {
	ex   *exchange
	rc   io.ReadCloser
	done atomic.Bool
	eof  atomic.Bool
}

var errBodyClosed = errors.New("h1rt: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	if b.done.Load() {
		if b.eof.Load() {
			return 0, io.EOF
		}
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err != nil && b.done.CompareAndSwap(false, true) {
		b.eof.Store(err == io.EOF)
		b.ex.finish(err == io.EOF)
	}
	return n, err
}

func (b *body) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.ex.finish(false)
	}
	return nil
}

// reqBody wraps a request body to tell its read errors (the client's
// fault) from write errors (the server's connection).
type reqBody struct {
	rc      io.ReadCloser
	err     error
	wfailed bool
}

func (b *reqBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// WriteTo keeps the body's own WriteTo (batched writes) in use.
func (b *reqBody) WriteTo(w io.Writer) (int64, error) {
	wt, ok := b.rc.(io.WriterTo)
	if !ok {
		return io.Copy(w, readOnly{b})
	}
	tw := &trackWriter{w: w}
	n, err := wt.WriteTo(tw)
	if err != nil {
		if tw.err != nil {
			b.wfailed = true
		} else {
			b.err = err
		}
	}
	return n, err
}

func (b *reqBody) Close() error { return b.rc.Close() }

type readOnly struct{ io.Reader }

type trackWriter struct {
	w   io.Writer
	err error
}

func (t *trackWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		t.err = err
	}
	return n, err
}

// shortBody reports (*http.Request).Write's error for a body that ended
// before its Content-Length: the client's fault, as a read error is.
func shortBody(err error) bool {
	return strings.HasPrefix(err.Error(), "http: ContentLength=")
}

// replayable: a request that may be sent again when a pooled connection
// turns out dead (net/http's rule for idempotent requests).
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil
}

func closeReq(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}

func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if scheme == "https" {
		return net.JoinHostPort(host, "443")
	}
	return net.JoinHostPort(host, "80")
}
