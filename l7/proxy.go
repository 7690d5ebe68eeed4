package l7

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/nexmux/nexmux/internal/logtext"
	"github.com/nexmux/nexmux/internal/perclient"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// Upstream-side timeouts. Each says why it has its value.
const (
	// upstreamIdleTimeout keeps pooled connections to Nexus below Jetty's
	// 30 s idle timeout, so nexmux never reuses a connection Jetty is
	// about to close (a request on it would fail with EOF).
	upstreamIdleTimeout = 20 * time.Second
	// upstreamDialTimeout bounds connecting to Nexus.
	upstreamDialTimeout = 10 * time.Second
	// upstreamResponseHeaderTimeout is Sonatype's own proxy_read_timeout:
	// Nexus may take minutes to commit a large upload before it answers.
	upstreamResponseHeaderTimeout = 300 * time.Second
	// transportBufferSize sizes the upstream connections' bufio buffers:
	// a full 16 KiB TLS record twice, so one read from the client's TLS
	// stream never has to be split across writes to Nexus. Every pooled
	// upstream connection holds two of them.
	transportBufferSize = 32 << 10
	// copyBufferSize is the pooled buffer ReverseProxy copies response
	// bodies (blob pulls) with: fewer, larger reads from Nexus wake the
	// netpoller less (numbers: docs/bench/notes.md). Only blob downloads
	// in flight hold one: everything else (manifests, tags, errors, HEAD)
	// copies with smallCopyBufferSize, so a thousand concurrent small
	// requests cannot pin half a gigabyte.
	copyBufferSize = 512 << 10
	// smallCopyBufferSize fits two full TLS records.
	smallCopyBufferSize = 32 << 10
	// upstreamMaxResponseHeaderBytes bounds an answer's headers from Nexus
	// (net/http's default is 10 MiB, per request in flight): Jetty sends
	// at most its responseHeaderSize, 8 KiB unless raised.
	upstreamMaxResponseHeaderBytes = 256 << 10
)

// upstreamSendTimeout bounds each write to Nexus (Sonatype's own
// proxy_send_timeout): a node that takes no byte of an upload for that long
// (frozen, partitioned) fails the request instead of holding it, and the
// client behind it, until the kernel gives up. Atomic: tests shorten it
// while connections of other tests may still write.
var upstreamSendTimeout atomic.Int64

func init() { upstreamSendTimeout.Store(int64(120 * time.Second)) }

// upstreamBodyReadTimeout bounds each read of a blob's body from Nexus
// (Sonatype's proxy_read_timeout, which nginx applies between two reads,
// mid-body too). Atomic: tests shorten it.
var upstreamBodyReadTimeout atomic.Int64

func init() { upstreamBodyReadTimeout.Store(int64(upstreamResponseHeaderTimeout)) }

// upstreamReadStallTimeout bounds each read from a Nexus connection (see
// upstreamConn.Read). Atomic: tests shorten it.
var upstreamReadStallTimeout atomic.Int64

func init() { upstreamReadStallTimeout.Store(int64(upstreamResponseHeaderTimeout + 30*time.Second)) }

// NewTransport returns the pooled transport nexmux uses towards Nexus.
func NewTransport() *http.Transport { return newTransport(upstreamDial, nil) }

var upstreamDial = (&net.Dialer{
	Timeout:   upstreamDialTimeout,
	KeepAlive: 15 * time.Second,
}).DialContext

// newTransport's connections are tracked in conns unless it is nil.
func newTransport(dial dialFunc, conns *upstreamConns) *http.Transport {
	dial = dialUpstream(dial)
	if conns != nil {
		dial = conns.trackedDial(dial)
	}
	return &http.Transport{
		Proxy:                  nil, // never an environment proxy between nexmux and Nexus
		DialContext:            dial,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        upstreamIdleTimeout,
		ResponseHeaderTimeout:  upstreamResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: upstreamMaxResponseHeaderBytes,
		// Pass Content-Encoding through untouched; decompressing would
		// change digests' byte streams.
		DisableCompression: true,
		WriteBufferSize:    transportBufferSize,
		ReadBufferSize:     transportBufferSize,
	}
}

// Observer receives one call per finished request (access log, metrics).
// It must not block.
type Observer func(ci *ConnInfo, r *http.Request, rec Record)

// Record describes one finished request.
type Record struct {
	Repo     string // "" when refused before a repository was chosen
	Status   int
	BytesIn  int64
	BytesOut int64
	Duration time.Duration
	End      time.Time // when the request ended (the access line's time)
	// Upstream is the time until Nexus's response headers (0 when
	// Nexus was never asked).
	Upstream time.Duration
	Reason   string // why nexmux itself answered, "" when Nexus did
	Registry string // mirror names: the configured registry served, else ""
}

// Config configures a Proxy.
type Config struct {
	Upstreams *Upstreams
	Transport http.RoundTripper // nil: NewTransport()
	Logger    *slog.Logger      // nil: slog.Default()
	Observe   Observer          // optional
	// PlainHTTPScheme is what clients of plain-HTTP connections (port
	// routes) used: "http" (default), or "https" when a TLS-ending load
	// balancer fronts them, so realms and Locations must say https.
	PlainHTTPScheme string
	// StripHeaders are more request header names never passed to Nexus
	// (--strip-header: the header a Remote User Token realm trusts).
	StripHeaders []string
	// MaxRequestsPerClient bounds one client address's requests in
	// flight (0: no limit); beyond it nexmux answers 429 itself.
	MaxRequestsPerClient int
	// PerClientIPv6Prefix counts IPv6 clients by this prefix length for
	// MaxRequestsPerClient (0 or 128: each address).
	PerClientIPv6Prefix int
	// MaxConnAge ends a client connection after the first response past
	// this age (0: never).
	MaxConnAge time.Duration
	// BodyTimeout bounds each read of a request body from the client, and
	// SendTimeout each write of a response to it, or over HTTP/1 behind
	// mux each 64 KiB of it (stall.go); 0:
	// DefaultBodyTimeout, DefaultSendTimeout; negative: never.
	BodyTimeout, SendTimeout time.Duration
}

// Proxy is the HTTP stage. It expects every request's context to carry a
// ConnInfo (see NewContext).
type Proxy struct {
	up        *Upstreams
	rp        *httputil.ReverseProxy
	rpBlob    *httputil.ReverseProxy // rp with the large copy buffer
	tr        http.RoundTripper      // towards Nexus
	log       *slog.Logger
	observe   Observer
	plain     string // scheme of plain-HTTP connections as the client saw it
	strip     map[string]bool
	perClient perclient.Counter // requests in flight per client, against MaxRequestsPerClient
	// refusing counts, per client, HTTP/2 429 answers not yet delivered
	// (the client keeps its window shut), against the same limit.
	refusing perclient.Counter
	maxAge   time.Duration
	bodyTO   time.Duration // 0: never
	sendTO   time.Duration // 0: never
	// lingerTime and lingerIdle bound linger (lingerTime, lingerIdle;
	// tests shorten them).
	lingerTime, lingerIdle time.Duration
	lingers                lingerSet
	// cutting is set once a drain's time is up and its connections are
	// being closed: a transfer failing then was cut by nexmux, not by its
	// client, and its access line says so.
	cutting atomic.Bool
	// conns are the connections to Nexus, which DrainEnded closes (nil
	// with Config.Transport).
	conns *upstreamConns
	// handling counts the HTTP/2 handlers running, access line included (see
	// Handling).
	handling atomic.Int64

	mirrorAuth mirrorAuth // --mirror-auth-file, swapped on reload
}

// reqState is one request's state. It is also the context the request is
// forwarded with (Value answers stateKey with the state itself), and holds
// the response and body wrappers, so a request allocates one of these for
// all of it.
type reqState struct {
	context.Context
	ci   *ConnInfo
	repo string
	sub  string
	// judged is sub as Jetty decodes it ("blob%73" is "blobs"): every
	// decision on the path reads it, so it is made on what Nexus serves.
	judged   string
	path     string // ctxPath + "/repository/" + repo + sub: Nexus's raw path
	query    string
	start    time.Time
	upstream time.Duration
	reason   string
	body     *countingBody // nil without a body
	mirror   *mirrorReq    // set on mirror names
	// pushMark: what a push-scoped token request on a split target gets
	// appended to its token (tokenmark.go); "" for any other request.
	pushMark string
	// tag is an upload follow-up's affinity tag (set by the failover
	// transport), handed back while it verifies: see Set.Retag.
	tag string
	// form is a token request's form body as checkForm read it, to send
	// it again to another repository (repoFallback).
	form []byte
	// anyRepo: /v2/ or a token request by the /v2/ path, which names no
	// repository: any of the name's repositories may answer (repoFallback).
	anyRepo bool

	cw       batchingWriter
	bodyWrap countingBody
	held     heldSlot     // an HTTP/2 request's per-client place
	place    heldSlot     // the per-client place given back as serve returns (HTTP/1, or no limit)
	fresh    *freshness   // the failover's first attempt's (freshanswer.go)
	trace    requestTrace // fresh's trace and the context carrying it
	// The failover's first attempt's context (detach.go) and URL, and
	// whether that attempt took them.
	det          detached
	url          url.URL
	attemptTaken bool
	// The failover's first answer's body wrapper, and whether it was
	// taken.
	done      doneBody
	doneTaken bool
}

// heldSlot is the per-client place of an HTTP/2 request, kept until its
// answer is delivered: net/http writes what the handler left buffered
// after ServeHTTP returns, and a client that keeps its flow-control window
// shut holds the stream, its goroutine and buffers until --send-timeout.
// Released at return, such answers would be bounded by nothing but 100
// streams a connection (~2 MiB each connection).
type heldSlot struct {
	c *perclient.Counter
	a netip.Addr
}

func (h *heldSlot) release() {
	if h.c != nil {
		h.c.Release(h.a)
		h.c = nil
	}
}

// deliver flushes an answer with a body while the place is held; the
// stream's write deadline (armed as ServeHTTP returned) bounds the wait.
func (h *heldSlot) deliver(w http.ResponseWriter, wrote int64) {
	if h.c != nil && wrote > 0 {
		_ = http.NewResponseController(w).Flush()
	}
}

type stateKey struct{}

// Value answers stateKey with st; every other key goes to the request's
// own context.
func (st *reqState) Value(key any) any {
	switch key {
	case stateKey{}:
		return st
	case ctxKey{}:
		if st.ci != nil {
			return st.ci // FromContext's, found once (ServeHTTP)
		}
	}
	return st.Context.Value(key)
}

// New builds a Proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Upstreams == nil {
		return nil, errors.New("l7: no upstreams")
	}
	p := &Proxy{up: cfg.Upstreams, log: cfg.Logger, observe: cfg.Observe, plain: "http", strip: stripSet(cfg.StripHeaders),
		maxAge: cfg.MaxConnAge}
	p.perClient.Max, p.perClient.IPv6Prefix = cfg.MaxRequestsPerClient, cfg.PerClientIPv6Prefix
	p.refusing.Max, p.refusing.IPv6Prefix = cfg.MaxRequestsPerClient, cfg.PerClientIPv6Prefix
	if cfg.PlainHTTPScheme == "https" {
		p.plain = "https"
	}
	p.bodyTO, p.sendTO = stallTimeout(cfg.BodyTimeout, DefaultBodyTimeout), stallTimeout(cfg.SendTimeout, DefaultSendTimeout)
	p.lingerTime, p.lingerIdle = lingerTime, lingerIdle
	if p.log == nil {
		p.log = slog.Default()
	}
	tr := cfg.Transport
	if tr == nil {
		p.conns = newUpstreamConns()
		tr = newTransport(upstreamDial, p.conns)
	}
	p.tr = tr
	f := failover{up: cfg.Upstreams, next: tr, cut: &p.cutting, fair: cfg.MaxRequestsPerClient > 0, ipv6Prefix: cfg.PerClientIPv6Prefix}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewriteRequest,
		Transport:      repoFallback{next: f, ctxPath: cfg.Upstreams.ctxPath},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.upstreamError,
		BufferPool:     smallBuffers{},
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	// The same proxy with the large copy buffer, for blob downloads.
	blob := *p.rp
	blob.BufferPool = bufferPool{}
	p.rpBlob = &blob
	return p, nil
}

// DrainBegan tells the proxy that a drain began: the lingers after its
// refusals end at once, as will any that would begin (linger.go).
func (p *Proxy) DrainBegan() { p.lingers.drain() }

// DrainEnded tells the proxy that the drain's time is up: the connections
// still open are about to be closed by nexmux. It closes the connections to
// Nexus too (drainend.go): a request still waiting on Nexus ends at once,
// with a 503 and its access line, instead of holding the exit up or being
// lost in it.
func (p *Proxy) DrainEnded() {
	p.cutting.Store(true)
	if p.conns != nil {
		p.conns.cutAll()
	}
}

// Handling is the number of HTTP/2 requests whose handler has not returned
// yet, so whose access line may still be to come. The drain's end waits for
// it: an HTTP/2 connection leaves the server as it closes, before the
// handlers it woke have logged (an HTTP/1 connection stays until its
// handler returns).
func (p *Proxy) Handling() int { return int(p.handling.Load()) }

// cutBy is what ended a transfer whose read or write failed: the drain's
// end, or else the client (who stopped, left or sent a broken body).
func (p *Proxy) cutBy(clientWord string) string {
	if p.cutting.Load() {
		return cutAtDrainEnd
	}
	return clientWord
}

// cutAtDrainEnd starts the reason of every request the drain's end cut.
const cutAtDrainEnd = "cut by nexmux at the drain's end: "

// CloseIdleConnections closes the keep-alive connections to Nexus that no
// request uses now. A shutdown calls it: nothing will reuse them, and they
// would stay open until their idle timeout.
func (p *Proxy) CloseIdleConnections() {
	if c, ok := p.tr.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

var errNoConnInfo = errors.New("nexmux: request without connection info")

var errUnaskedSwitch = errors.New("Nexus answered 101 Switching Protocols to a request that asked for no upgrade")

// ServeHTTP confines the request to its connection's route and proxies it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor > 1 {
		// HTTP/1 handlers are counted by their connections (HTTPConns);
		// one shared counter more per request costs every small request.
		p.handling.Add(1)
		defer p.handling.Add(-1)
	}
	st := &reqState{Context: r.Context(), ci: FromContext(r.Context()), start: time.Now()}
	defer st.held.release()
	p.serve(w, r, st)
	if r.ProtoMajor > 1 && r.Body != nil {
		// Nothing reads the upload any more: closed, net/http drops what
		// it buffered (up to 1 MiB) and what comes on, instead of keeping
		// it while deliver waits, up to --send-timeout, on a client that
		// does not take its answer (a 429 too, held apart from requests
		// in flight).
		r.Body.Close()
	}
	st.held.deliver(w, st.cw.n)
	if st.fresh != nil {
		st.fresh.release()
	}
	if st.cw.lingers && !st.bodyWrap.ended.Load() {
		// After the access line and every place is given back: the
		// linger holds only the connection.
		if rd, _ := deadliners(w); rd != nil {
			p.linger(&st.cw, st.bodyWrap.ReadCloser, rd)
		}
	}
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, st *reqState) {
	cw := &st.cw
	cw.ResponseWriter = w
	cw.client = st.Context
	if st.ci != nil && r.ProtoMajor == 1 {
		cw.batch = st.ci.Writes
	}
	rd, wd := deadliners(w)
	sd := wd
	var span SendDeadliner
	if st.ci != nil && r.ProtoMajor == 1 && st.ci.Sends != nil {
		// Net/http's write deadline is absolute: a slow but moving client
		// would be cut on every write it takes longer than sendTO to read.
		sd, span = st.ci.Sends, st.ci.Sends
	}
	if p.sendTO > 0 {
		cw.deadline, cw.span, cw.timeout = sd, span, p.sendTO
		cw.timeEvery = r.ProtoMajor > 1
	}
	cw.pieces = r.ProtoMajor > 1
	cw.http10 = !r.ProtoAtLeast(1, 1)
	var body *countingBody
	// HTTP/2 gives a request without a body (GET, HEAD) a Body all the
	// same; its length says there is nothing to wait for.
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body = &st.bodyWrap
		body.ReadCloser = r.Body
		if p.bodyTO > 0 {
			body.deadline, body.timeout = rd, p.bodyTO
			body.untime = r.ProtoMajor > 1
		}
		if r.ProtoMajor == 1 && cw.deadline != nil && r.Header.Get("Expect") != "" {
			// net/http answers any other Expect with 417 itself.
			body.cont = cw
		}
		// The wrapper goes on a copy: on its own request net/http must
		// find its own body, or it takes a client waiting for "100
		// Continue" for one sending its body and blocks reading it
		// instead of sending a refusal.
		rc := new(http.Request)
		*rc = *r
		rc.Body = body
		r = rc
		st.body = body
		if r.ProtoMajor == 1 {
			cw.reqBody = body
		}
	}
	defer func() {
		// A response body that broke off at Nexus (or that the drain's end
		// cut there, DrainEnded) ends in ReverseProxy's panic, which says
		// nothing of why: taken for the access line, and passed on below.
		cut := recover()
		// Given back before the access line, as a deferred Release of
		// its own did; a second defer in serve, with its many returns,
		// would cost every request the runtime's slower defer records.
		st.place.release()
		if cut != nil && cut != http.ErrAbortHandler {
			// Passed on below from here, where the stack still shows
			// where it began.
			p.log.Error("panic serving a request", "panic", cut, "stack", string(debug.Stack()))
		}
		if cw.lingers && !body.ended.Load() {
			// nexmux refused the request (batchingWriter.refusing):
			// ServeHTTP's end lingers on the rest of the body, under
			// deadlines of its own.
			body.lastDeadline(time.Time{})
		} else if body != nil && body.deadline != nil && !body.ended.Load() {
			// net/http reads the unread rest of a small body before it
			// sends Nexus's early answer: --body-timeout bounds that read
			// too, or a client that never sends its body gets no answer.
			// A body that ended (EOF, or failed) needs no more time.
			body.lastDeadline(time.Now().Add(body.timeout))
			if cw.deadline != nil && wd != nil {
				// Nexus's early answer waits for that read before it goes
				// out: an absolute bound on both, as net/http's read is.
				_ = wd.SetWriteDeadline(time.Now().Add(body.timeout + cw.timeout))
			}
		} else {
			if body != nil {
				body.lastDeadline(time.Time{})
			}
			// net/http sends what is still buffered once this returns
			// (HTTP/2 too: its stream's deadline ends with the stream).
			// Over HTTP/1 the last write's deadline still stands.
			if cw.n == 0 || cw.timeEvery {
				cw.armDeadline()
			}
		}
		if p.observe != nil && st.ci != nil {
			end := time.Now()
			rec := Record{Repo: st.repo, Status: cw.status, BytesOut: cw.n, Duration: end.Sub(st.start), End: end, Upstream: st.upstream, Reason: st.reason, Registry: st.registryLabel()}
			if body != nil {
				rec.BytesIn = body.n.Load()
			}
			if rec.Status == 0 {
				rec.Status = http.StatusOK
			}
			p.clientGone(r, st, cw, cut, &rec)
			p.observe(st.ci, r, rec)
		}
		if cut != nil {
			panic(cut)
		}
	}()
	if st.ci == nil || st.ci.Route == nil {
		st.reason = errNoConnInfo.Error()
		writeError(cw, http.StatusInternalServerError, "UNKNOWN", errNoConnInfo.Error())
		return
	}
	st.ci.MarkRequested()
	if st.ci.Revoked.Load() {
		// A reload removed this connection's route (or its balancer):
		// 421 sends the client to a new connection, routed afresh.
		p.refuseLocal(cw, st, http.StatusMisdirectedRequest, "DENIED", "nexmux: this connection's route was removed; reconnect")
		return
	}
	if a := st.ci.Client.Addr(); a.IsValid() {
		if !p.perClient.Acquire(a) {
			if r.ProtoMajor > 1 {
				if !p.refusing.Acquire(a) {
					// As many refusals are still undelivered: a reset
					// holds nothing once sent.
					cw.status = http.StatusTooManyRequests
					st.reason = "nexmux: too many requests in flight from this client" + p.prefixOf(a) + ", and as many refusals not taken; stream reset"
					panic(http.ErrAbortHandler)
				}
				st.held = heldSlot{c: &p.refusing, a: a}
			}
			cw.Header().Set("Retry-After", "1")
			p.refuseForLoad(cw, st, http.StatusTooManyRequests, "TOOMANYREQUESTS", "nexmux: too many requests in flight from this client"+p.prefixOf(a)+"; retry later")
			return
		}
		if r.ProtoMajor > 1 && p.perClient.Max > 0 {
			// Without a limit nothing is counted: no place to hold, and
			// deliver's early flush would cost a frame per answer.
			st.held = heldSlot{c: &p.perClient, a: a}
		} else {
			st.place = heldSlot{c: &p.perClient, a: a}
		}
	}
	if status, code, msg := p.admit(st.ci, r); status != 0 {
		if status == http.StatusMethodNotAllowed {
			allow := registryAllow
			if st.ci.Route.Mirror != nil {
				// A mirror is read-only: its 405 names only what it serves.
				rawPath, _, _ := strings.Cut(r.RequestURI, "?")
				allow = p.mirrorAllowFor(st.ci.Route.Mirror, rawPath)
			}
			cw.Header().Set("Allow", allow)
		}
		p.refuseLocal(cw, st, status, code, msg)
		return
	}
	rawPath, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	if why, ok := checkPath(rawPath); !ok {
		p.refuseLocal(cw, st, http.StatusBadRequest, "NAME_INVALID", "nexmux: "+why)
		return
	}
	if !queryForwardable(rawQuery) {
		// HTTP/2 lets a space into :path; forwarded raw, it would split
		// the request line sent to Nexus.
		p.refuseLocal(cw, st, http.StatusBadRequest, "UNSUPPORTED", "nexmux: space or control byte in the query")
		return
	}
	if strings.IndexByte(rawQuery, '#') >= 0 {
		// Jetty's query ends at a '#' (the fragment), Go's does not: Nexus
		// would read other parameters than nexmux judged ("?describe#x").
		p.refuseLocal(cw, st, http.StatusBadRequest, "UNSUPPORTED", "nexmux: '#' in the query (Nexus would end the query there; send it as %23)")
		return
	}
	// Nexus gets the query without the affinity tag, whose value a '?'
	// ends (upstream.SplitTag): "_nexmux=x?describe" names describe, and
	// "_nexmux=x?ns=ghcr.io" a registry, there. Each decision on the query
	// is made on that one.
	nexusQuery, _ := upstream.SplitTag(rawQuery)
	if describeParam(rawQuery) || nexusQuery != rawQuery && describeParam(nexusQuery) {
		p.refuseLocal(cw, st, http.StatusBadRequest, "UNSUPPORTED", "nexmux: the query parameter describe is not served (Nexus would describe the request, headers included, instead of answering it)")
		return
	}
	// The push marker of a token nexmux handed out never reaches Nexus.
	auth, pushed := takeSession(r.Header)
	if m := st.ci.Route.Mirror; m != nil {
		// A mirror serves no upload, so the tag has nothing to pick.
		if !p.mirrorRequest(cw, r, st, m, rawPath, nexusQuery) {
			return
		}
		st.judged = decodedPath(st.sub)
	} else {
		repo, sub, judged, ok := mapRequest(st.ci.Route.Target, p.up.ctxPath, route.Request{Method: r.Method, Path: rawPath, Query: nexusQuery, Auth: auth, Pushed: pushed})
		if !ok {
			p.refuseLocal(cw, st, http.StatusNotFound, "NOT_FOUND", "nexmux: only the registry API (/v2/, /v1/) is served on this name")
			st.reason = "outside the registry API"
			return
		}
		// The tag stays in for failover, which takes it out.
		st.repo, st.sub, st.judged, st.query = repo, sub, judged, rawQuery
		if st.ci.Route.Target.Split() && route.TokenPush(r.Method, st.judged, nexusQuery) {
			st.pushMark = pushMark + route.PushList(nexusQuery)
		}
		st.anyRepo = registryPath(rawPath) && (st.judged == "/v2" || st.judged == "/v2/" || route.IsTokenPath(st.judged))
	}
	if strings.HasSuffix(st.judged, "/") && contentRead(r.Method, strings.TrimRight(st.judged, "/")) {
		// No reference ends in '/': a lenient router serves the read all
		// the same, and the slash takes it past a routing rule's pattern.
		p.refuseLocal(cw, st, http.StatusNotFound, "NOT_FOUND", "nexmux: a manifest or blob path ends with its reference, not with '/'")
		return
	}
	if st.query != "" && contentRead(r.Method, st.judged) {
		// Nexus's routing rules match "<path>?<params>" whole: a client's
		// parameter would let an image a rule blocks through.
		st.query = ""
	}
	st.path = p.up.ctxPath + "/repository/" + st.repo + st.sub
	if !wireExact(st.path) {
		p.refuseLocal(cw, st, http.StatusBadRequest, "NAME_INVALID", "nexmux: the request path holds characters that must be percent-encoded")
		st.reason = "path cannot be forwarded byte for byte"
		return
	}
	// Jetty reads such a body as parameters, describe among them.
	if formEncoded(r) && !p.checkForm(cw, r, st) {
		return
	}
	if lostBody(r) {
		p.clientBodyFailed(cw, r, st, errLostBody)
		return
	}
	p.beforeForward(st.ci, cw)
	rp := p.rp
	if r.Method == http.MethodGet && isBlobDownload(st.judged) {
		rp = p.rpBlob
	}
	rp.ServeHTTP(cw, r.WithContext(st))
}

// hostPortValid reports whether h (not empty) has no port, an empty one
// ("name:"), or a decimal port of at most 65535 (five digits at most).
func hostPortValid(h string) bool {
	if strings.IndexByte(h, ':') < 0 {
		return true // the common case, and SplitHostPort's error allocates
	}
	_, port, err := net.SplitHostPort(h)
	if err != nil {
		// Without a port, only an IPv6 literal holds a colon.
		return h[0] == '[' && strings.IndexByte(h, ']') == len(h)-1
	}
	if port == "" {
		return true
	}
	n, err := strconv.ParseUint(port, 10, 16)
	// Port 0 is no port a client reaches anything on.
	return err == nil && len(port) <= 5 && n != 0
}

// hostNamed refuses a Host that names no host where any Host is served
// (a port route, no SNI): Nexus builds the realm and Locations from it, and
// "a,b" or "x;y=z" handed back as the token realm leads nowhere. A route's
// name is a host name already (LookupHost); brackets were checked.
func hostNamed(h string) (int, string, string) {
	if h[0] == '[' || route.IsHostName(route.CanonicalHost(h)) {
		return 0, "", ""
	}
	return http.StatusBadRequest, "UNSUPPORTED", fmt.Sprintf("nexmux: Host %q names no host", ShortName(h))
}

// publicAuthority is the Host a client sent in the form the URLs nexmux
// hands back are written in: lowercase, without a trailing dot or an empty
// port ("Team.Example.COM.:" is "team.example.com"). The port stays: a
// legacy connector's clients name it.
func publicAuthority(h string) string {
	port := ""
	if i := strings.LastIndexByte(h, ':'); i >= 0 && i < len(h)-1 && !strings.Contains(h[i:], "]") {
		port = h[i:]
	}
	host := route.CanonicalHost(h)
	if len(host)+len(port) == len(h) && h[:len(host)] == host {
		return h
	}
	return host + port
}

// bracketedIPv6 reports whether h starts with an IPv6 address, without a
// zone, in brackets.
func bracketedIPv6(h string) bool {
	i := strings.IndexByte(h, ']')
	if i < 0 {
		return false
	}
	a, err := netip.ParseAddr(h[1:i])
	return err == nil && a.Is6() && a.Zone() == ""
}

// RegistryMethod reports whether the Registry API uses method. nexmux
// refuses the others, which keeps client-chosen tokens away from Nexus and
// out of metric labels.
func RegistryMethod(method string) bool {
	return slices.Contains(RegistryMethods[:], method)
}

// RegistryMethods are the methods RegistryMethod admits.
var RegistryMethods = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// registryAllow is the Allow header of a 405 (RFC 9110 requires one).
var registryAllow = strings.Join(RegistryMethods[:], ", ")

// admit refuses requests that do not belong on this connection.
func (p *Proxy) admit(ci *ConnInfo, r *http.Request) (int, string, string) {
	// Absolute-form targets ("GET http://other/ HTTP/1.1") and CONNECT
	// would make nexmux a forward proxy; asterisk-form has no repository.
	if r.Method == http.MethodConnect || !strings.HasPrefix(r.RequestURI, "/") {
		return http.StatusBadRequest, "UNSUPPORTED", "nexmux: only origin-form request targets (/v2/...) are accepted"
	}
	if !RegistryMethod(r.Method) {
		return http.StatusMethodNotAllowed, "UNSUPPORTED", "nexmux: method not used by the registry API"
	}
	if (r.Method == http.MethodPut || r.Method == http.MethodPost) && exhaustAgent(r.Header) {
		return http.StatusBadRequest, "UNSUPPORTED", "nexmux: Maven and Ivy user agents may not upload here: Nexus would read the whole body of an upload it refuses before answering"
	}
	// An upgrade (h2c, websocket) answered with 101 would turn the
	// connection into a raw tunnel to Nexus, past every path check; the
	// Registry API never upgrades.
	if r.Header.Get("Upgrade") != "" {
		return http.StatusBadRequest, "UNSUPPORTED", "nexmux: protocol upgrades are not served"
	}
	// Nexus builds realms and Locations from Host; without one (HTTP/1.0)
	// Go would send the node's own address, which Nexus would hand back.
	if r.Host == "" {
		return http.StatusBadRequest, "UNSUPPORTED", "nexmux: a Host header is required"
	}
	// HTTP/2 takes bytes in :authority no Host header may hold; Go's
	// transport would send Nexus an empty Host instead (as above).
	// net/http's HTTP/1 reader has refused such a Host header already
	// (an absolute-form target's host is refused with its path).
	if r.ProtoMajor > 1 && !httpguts.ValidHostHeader(r.Host) {
		return http.StatusBadRequest, "UNSUPPORTED", fmt.Sprintf("nexmux: Host %q holds characters a Host header may not", ShortName(r.Host))
	}
	// Nexus would build the realm and Locations from it too; no client
	// brackets anything but an IPv6 address, and none sends a zone.
	if r.Host[0] == '[' && !bracketedIPv6(r.Host) {
		return http.StatusBadRequest, "UNSUPPORTED", fmt.Sprintf("nexmux: Host %q: what its brackets hold is no IPv6 address", ShortName(r.Host))
	}
	// net/http takes any port text, and routing ignores the port; Nexus
	// would build the realm and Locations it hands back from it.
	if !hostPortValid(r.Host) {
		return http.StatusBadRequest, "UNSUPPORTED", fmt.Sprintf("nexmux: the port of Host %q is not a port number (1-65535)", ShortName(r.Host))
	}
	if ci.ByPort {
		return hostNamed(r.Host)
	}
	// HTTP/2 lets a client reuse a connection opened for one name for
	// another name covered by the same (wildcard) certificate. The route
	// belongs to the connection, so a Host for another route is refused
	// with 421 and the client opens a new connection (RFC 9110 15.5.20).
	hr := ci.Table.LookupHost(r.Host)
	// Routes are compared by what they reach: two names for the same
	// repositories (or the default route and its own name) may share a
	// connection.
	if hr == ci.Route || hr != nil && hr.Passthrough == "" && hr.Mirror == nil && hr.Target == ci.Route.Target {
		return 0, "", ""
	}
	if hr == nil && ci.ServerName == "" {
		// No SNI (IP-literal client on the default route) and a Host that
		// names no route: nothing to disagree with, but it must name a host.
		return hostNamed(r.Host)
	}
	return http.StatusMisdirectedRequest, "DENIED", fmt.Sprintf("nexmux: Host %q is not served on a connection for %q", ShortName(r.Host), ShortName(ci.ServerName))
}

// maxShownName is the longest host name a message holds whole.
const maxShownName = 255

// ShortName is a client-chosen name as a message or log line holds it: a
// host name has at most 253 bytes, and a Host or SNI of 64 KiB would go
// whole into every access line, refusal line and error body.
func ShortName(n string) string { return logtext.Shorten(n, maxShownName) }

func (p *Proxy) rewriteRequest(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*reqState)
	out := pr.Out
	// The node is chosen per attempt by the failover transport.
	out.URL.Scheme = p.up.scheme
	out.URL.Host = "nexus.invalid"
	setWirePath(out.URL, st.path)
	out.URL.RawQuery = st.query
	// Nexus builds realms and Locations from Host (+ X-Forwarded-Proto), so
	// Host stays exactly as sent and X-Forwarded-Host is never set: Nexus
	// would append the port a second time ("host:5001:5001").
	out.Host = pr.In.Host
	p.scrubHeaders(out.Header)
	// Request trailers are never forwarded (Out's copy is taken before the
	// body is read): a Trailer line would announce fields that never come.
	out.Trailer = nil
	// The values are the connection's own slices, shared by its requests:
	// nothing below writes into a header value in place (set or append).
	if xff := st.ci.texts().xff; xff != nil {
		out.Header["X-Forwarded-For"] = xff
	} else if host, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		out.Header.Set("X-Forwarded-For", host)
	}
	if p.scheme(st.ci) == "https" {
		out.Header["X-Forwarded-Proto"] = protoHTTPS
	} else {
		out.Header["X-Forwarded-Proto"] = protoHTTP
	}
	p.mirrorOutgoing(st, out)
	if out.Body != nil && out.Body != http.NoBody {
		bb := &batchedBody{ReadCloser: out.Body}
		if pr.In.ProtoMajor == 1 && st.ci.Reads != nil {
			bb.ahead = st.ci.Reads
		}
		out.Body = bb
	}
}

// setWirePath makes u's path rawPath on the wire: the client's bytes go to
// Nexus unchanged. net/url writes a plain path as it is; otherwise RawPath
// and the decoded Path are set together so net/url keeps RawPath.
func setWirePath(u *url.URL, rawPath string) {
	if plainPath(rawPath) {
		u.Path, u.RawPath = rawPath, ""
	} else if dec, err := url.PathUnescape(rawPath); err == nil {
		u.Path, u.RawPath = dec, rawPath
	} else {
		u.Path, u.RawPath = rawPath, ""
	}
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := resp.Request.Context().Value(stateKey{}).(*reqState)
	st.upstream = time.Since(st.start)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// No request nexmux forwards asks for an upgrade (admit), and
		// ReverseProxy never closes a 101's body: the attempt (in-flight
		// count, connection slot) would stay taken for good.
		return errUnaskedSwitch
	}
	if resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge && !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		// Jetty's refusal of headers over its 8 KiB (nexmux takes 64 KiB),
		// in its own page: registry clients print only a JSON error.
		return &refusal{status: resp.StatusCode, code: "UNSUPPORTED", close: resp.Request.ContentLength != 0,
			msg: "nexmux: Nexus refused the request headers as too large"}
	}
	if resp.StatusCode == http.StatusNoContent {
		// None on a 204 (RFC 9110 8.6): net/http's HTTP/1 server drops
		// one, its HTTP/2 server sends it, and nghttp2 (curl) resets a
		// 204 stream whose content-length is not 0.
		delete(resp.Header, "Content-Length")
	}
	registryError(resp)
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header["Retry-After"] == nil {
		// Nexus's own 503 (a repository offline on every node, a frozen
		// node) says nothing of when to retry; nexmux's own 503s do.
		resp.Header["Retry-After"] = retryAfterNexus503
	}
	if st.pushMark != "" {
		if err := markToken(resp, st.pushMark); err != nil {
			return err
		}
	}
	h := resp.Header
	// Nexus's alternative services are not nexmux's. Server names Nexus's
	// exact version and edition (a front's X-Powered-By its software): a
	// front door keeps them inside, and no registry client reads them.
	delete(h, "Alt-Svc")
	delete(h, "Server")
	delete(h, "X-Powered-By")
	// Most responses (every blob) carry no URL to rewrite.
	if h["Location"] == nil && h["Link"] == nil && h["Www-Authenticate"] == nil &&
		h["Content-Location"] == nil && h["Refresh"] == nil && h["Set-Cookie"] == nil {
		hideNodeHeaders(h, resp.Request.URL.Host, resp.Request.Host, false)
		return nil
	}
	if locs := h["Location"]; len(locs) > 1 {
		// Several: nothing says which is meant, and clients take
		// different ones.
		if slices.ContainsFunc(locs, func(l string) bool { return l != locs[0] }) {
			return errSeveralLocations
		}
		h["Location"] = locs[:1]
	}
	pub := publicURLs{
		ctxPath:   p.up.ctxPath,
		target:    st.ci.Route.Target,
		hostnames: p.hostnames(resp.Request.Host),
	}
	if st.mirror != nil {
		// Only the repository this request went to maps back.
		pub.target = route.Target{Pull: st.repo, Push: st.repo}
	} else if t := st.ci.Route.Target; t.Split() && st.repo == t.Push {
		// A read reaches the push repository only in the
		// "/repository/<hosted>/" form; its next page must too.
		pub.linkPrefix = p.up.ctxPath + "/repository/" + st.repo
	}
	if resp.Request.Host != "" {
		pub.base = p.scheme(st.ci) + "://" + publicAuthority(resp.Request.Host)
	}
	// Only a blob read's redirect may send the client to a blob store.
	blobRedirect := resp.StatusCode/100 == 3 && isBlobDownload(st.judged) &&
		(resp.Request.Method == http.MethodGet || resp.Request.Method == http.MethodHead)
	if blobRedirect {
		pub.nodes = p.up.nodeKeys()
	}
	pub.rewriteHeaders(resp.Header, blobRedirect)
	if locs := h["Location"]; len(locs) == 1 && strings.ContainsAny(locs[0], " \t") {
		// A list in one (no URI holds a blank), past the authority a
		// joined X-Forwarded-Host puts one in, which the rewrite repairs.
		return errSeveralLocations
	}
	hideNodeHeaders(h, resp.Request.URL.Host, resp.Request.Host, blobRedirect)
	p.tagUpload(resp, st.tag)
	if st.mirror != nil {
		st.mirror.publicForm(resp.Header, pub.base)
	}
	return nil
}

// errSeveralLocations refuses an answer with more than one Location.
var errSeveralLocations = &refusal{status: http.StatusBadGateway, code: "UNAVAILABLE", close: true,
	msg: "nexmux: Nexus answered with several Locations; retry later"}

// prefixOf is " (prefix P)" when per-client limits count a by its IPv6
// prefix P: the address itself may have no request in flight.
func (p *Proxy) prefixOf(a netip.Addr) string {
	if pre, ok := perclient.Prefix(a, p.perClient.IPv6Prefix); ok {
		return " (prefix " + pre + ")"
	}
	return ""
}

// retryAfterNexus503 is the Retry-After given to a 503 of Nexus's that
// has none, as to nexmux's own when no node is reachable; capacity one, so
// an append copies.
var retryAfterNexus503 = []string{"5"}[:1:1]

// X-Forwarded-Proto's values, shared by every request: capacity one, so
// an append copies.
var (
	protoHTTPS = []string{"https"}[:1:1]
	protoHTTP  = []string{"http"}[:1:1]
)

// scheme is the scheme the client used to reach nexmux.
func (p *Proxy) scheme(ci *ConnInfo) string {
	if ci.TLS {
		return "https"
	}
	return p.plain
}

// hostnames lists the names under which Nexus may refer to itself in the
// URLs it returns: the public Host (Nexus builds absolute URLs from it) and
// every upstream node's host.
func (p *Proxy) hostnames(publicHost string) []string {
	var names []string
	if publicHost != "" {
		names = append(names, hostOf(publicHost))
	}
	return append(names, p.up.hostnames()...)
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	if st != nil {
		if berr := st.body.clientBodyErr(); berr != nil || errors.Is(err, ErrClientBody) {
			if berr == nil {
				berr = err
			}
			p.clientBodyFailed(w, r, st, berr)
			return
		}
	}
	if p.cutting.Load() && !errors.As(err, new(*refusal)) {
		// The drain's end cut the round trip (DrainEnded), or the
		// client's connection under it: nexmux's doing, not the client's
		// or Nexus's. Answered in case the client still reads.
		if st != nil {
			st.reason = cutAtDrainEnd + "Nexus had not answered"
		}
		p.log.Debug("upstream request cut at the drain's end", "method", logtext.Bound(r.Method), "path", logtext.Bound(r.URL.Path), "err", logtext.Bound(err.Error()))
		w.Header().Set("Retry-After", "1")
		endConnection(w)
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "nexmux: stopping; retry")
		return
	}
	if errors.Is(err, context.Canceled) || r.Context().Err() != nil {
		// The client went away; ReverseProxy has cancelled the upstream
		// request. Nobody is left to answer.
		if st != nil {
			st.reason = "client gone"
		}
		if cw, ok := w.(*batchingWriter); ok && cw.status == 0 {
			cw.status = 499 // for logs and metrics only: nothing is sent
		}
		if r.ProtoMajor == 1 {
			// net/http would fill in an empty 200 for a handler that
			// wrote nothing, and its context also ends on a half-close,
			// whose client still reads: the connection ends unanswered.
			panic(http.ErrAbortHandler)
		}
		return
	}
	var rf *refusal
	if errors.As(err, &rf) {
		if st != nil {
			st.reason = rf.msg
		}
		if rf.retryAfter != "" {
			w.Header().Set("Retry-After", rf.retryAfter)
		}
		if rf.close && r.ProtoMajor == 1 && r.ContentLength != 0 {
			w.Header().Set("Connection", "close") // see refusal.close
		}
		writeError(w, rf.status, rf.code, rf.msg)
		return
	}
	if st != nil {
		st.reason = "upstream: " + err.Error()
	}
	p.log.Warn("upstream request failed", "method", logtext.Bound(r.Method), "path", logtext.Bound(r.URL.Path), "err", logtext.Bound(err.Error()))
	w.Header().Set("Retry-After", "5")
	if upstream.LocalDialFailure(err) {
		// Nexus is fine: an operator told it is not would look there.
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "nexmux: out of file descriptors, local ports or socket memory to reach Nexus right now; retry later")
		return
	}
	status, words := http.StatusBadGateway, "the exchange with Nexus failed"
	var ne net.Error
	switch {
	case errors.Is(err, errNodeDown):
		// Frozen or cut off, and not coming back soon: the client retries
		// (docker restarts a layer's upload), and another node takes it.
		words = "the Nexus node serving this request was found down before it answered"
	case errors.As(err, &ne) && ne.Timeout():
		status, words = http.StatusGatewayTimeout, "Nexus did not answer in time"
	case refused(err):
		// Nothing accepts connections (Nexus stopped or restarting):
		// unavailable for now, the status Retry-After is defined for and
		// the one the Registry API pairs with UNAVAILABLE.
		status, words = http.StatusServiceUnavailable, "Nexus is not reachable right now"
	case connBroke(err):
		words = "the connection to Nexus broke before its answer"
	case errors.Is(err, errTooMany1xx):
		words = "Nexus sent informational answers without end"
	case strings.Contains(err.Error(), "malformed"):
		// net/http's own words for an answer that is no HTTP; its error
		// types are unexported.
		words = "Nexus's answer could not be read"
	}
	// The cause (addresses, ports) goes to the log, not to clients.
	writeError(w, status, "UNAVAILABLE", "nexmux: "+words+"; retry later")
}

// connBroke reports a connection to Nexus closed or reset under a request.
func connBroke(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// clientGone says in rec why a response with no reason of its own did not
// reach its client whole: its writes failed, Nexus's body broke off, or
// the client left (its request's context ended) before it ended.
func (p *Proxy) clientGone(r *http.Request, st *reqState, cw *batchingWriter, cut any, rec *Record) {
	if rec.Reason != "" || p.cutting.Load() {
		// A reason of its own stands; past the drain's end, a failed
		// write or a broken body from Nexus is the drain's doing.
		if rec.Reason == "" && cw.werr != nil {
			rec.Reason = cutAtDrainEnd + cw.werr.Error()
		} else if rec.Reason == "" && cut == http.ErrAbortHandler {
			rec.Reason = cutAtDrainEnd + "Nexus's response broke off"
		}
		return
	}
	h2 := r.ProtoMajor > 1
	switch {
	case cw.lateStatus && h2:
		// Reset before the status was written: none of it can reach
		// the client (an HTTP/2 stream's context ends only with the
		// stream, while the handler runs), as with one gone while
		// waiting for Nexus (upstreamError).
		rec.Status, rec.BytesOut, rec.Reason = 499, 0, "client gone"
	case cw.werr != nil:
		rec.Reason = "response cut: " + cw.werr.Error()
	case cut == http.ErrAbortHandler:
		rec.Reason = "response cut: Nexus's response broke off"
	case cw.lateStatus:
		// HTTP/1: a client that half-closed reads its answer still, and
		// looks the same as one gone until a write fails (often only
		// after this line): answered, and said.
		rec.Reason = "client closed its side before the status: answered, perhaps to no one"
	case h2 && st.Context.Err() != nil:
		// Reset after the status: END_STREAM never went out.
		rec.Reason = "response cut: client gone"
	}
}

// writeError answers in the Registry API's error format, which docker and
// other clients print to the user.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	if cw, ok := w.(*batchingWriter); ok {
		cw.refusing()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	h.Set("X-Content-Type-Options", "nosniff")
	body := ErrorBody(code, msg)
	// net/http would add it for so small a body, but not over HTTP/2 once
	// heldSlot.deliver flushed the answer before the handler returned.
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ErrorBody is a Registry-API error body with one error, its fields in the
// order the distribution spec and Nexus write them, and a final newline.
func ErrorBody(code, msg string) []byte {
	type apiError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail"`
	}
	b, _ := json.Marshal(struct {
		Errors []apiError `json:"errors"`
	}{[]apiError{{Code: code, Message: msg}}})
	return append(b, '\n')
}

// copyBuffer is pooled as an array pointer, so Get and Put allocate
// nothing (a pooled []byte would box a new slice header on every Put).
type copyBuffer [copyBufferSize]byte

var copyBuffers = sync.Pool{New: func() any { return new(copyBuffer) }}

type bufferPool struct{}

type smallCopyBuffer [smallCopyBufferSize]byte

var smallCopyBuffers = sync.Pool{New: func() any { return new(smallCopyBuffer) }}

type smallBuffers struct{}

func (smallBuffers) Get() []byte { return smallCopyBuffers.Get().(*smallCopyBuffer)[:] }
func (smallBuffers) Put(b []byte) {
	if len(b) == smallCopyBufferSize {
		smallCopyBuffers.Put((*smallCopyBuffer)(b))
	}
}

// isBlobDownload reports a GET of ".../blobs/<digest>" (not an upload
// session), the only response that is routinely large.
func isBlobDownload(sub string) bool {
	i := strings.LastIndex(sub, "/blobs/")
	return i >= 0 && !strings.HasPrefix(sub[i:], "/blobs/uploads")
}

func (bufferPool) Get() []byte { return copyBuffers.Get().(*copyBuffer)[:] }
func (bufferPool) Put(b []byte) {
	if len(b) == copyBufferSize {
		copyBuffers.Put((*copyBuffer)(b))
	}
}

// batchingWriter counts what a response sends (status, bytes) for logs and
// metrics, and batches large writes into few TLS records on HTTP/1.x.
type batchingWriter struct {
	http.ResponseWriter
	status int
	n      int64
	batch  WriteBatcher // nil: write as net/http does
	// deadline bounds each write and flush by timeout (nil: none). Even
	// a small answer blocks once a pipelining client has filled the
	// socket's buffers (or, over HTTP/2, keeps its window shut). Over
	// HTTP/1 behind mux it is ConnInfo.Sends: a write fails only once the
	// client took under 64 KiB in timeout, however long the write is.
	deadline writeDeadliner
	span     SendDeadliner // deadline, when it is ConnInfo.Sends
	timeout  time.Duration
	// timeEvery bounds every write and flush (HTTP/2): a stream whose
	// window the client keeps shut blocks even a small one, with no buffer
	// to fill. There the deadline is a timer that resets the stream
	// whether or not a write waits, so it is cleared once the write is
	// taken: a pause of Nexus's before the next is not the client's.
	timeEvery bool
	// pieces: writes go in h2SendQuantum pieces (HTTP/2). A write a
	// stream reset ends counts nothing in net/http, however much of it
	// went out: a piece bounds what n misses of the bytes sent.
	pieces bool
	// client is the request's context: it ends when the client leaves
	// (HTTP/2: resets the stream), or over HTTP/1 also half-closes.
	client context.Context
	// lateStatus: the client's context had ended when the status was
	// written (the client left while Nexus worked on its answer).
	lateStatus bool
	// werr is the first failed write: the response was cut (the client
	// stopped reading, left, or a drain closed it), which the access line
	// must say, since its status is the 200 already sent.
	werr error
	// conn is the forwarded request's connection: revoked (by a reload,
	// even while Nexus works on the answer) or past maxAge
	// (--max-conn-age), it ends after the answer, whose final status says
	// so, or the client's next request races the close. Said there, not
	// before: ReverseProxy clears the header map after each 1xx.
	conn   *ConnInfo
	maxAge time.Duration
	// http10: the client spoke HTTP/1.0, to which no 1xx may go.
	http10 bool
	// reqBody is an HTTP/1 request's body (nil: none, or HTTP/2), which a
	// refusal may leave unread (refusing).
	reqBody *countingBody
	// lingers: a refusal left reqBody unread, to be lingered on.
	lingers bool
}

// refusing readies an answer nexmux writes itself (writeError) to an
// HTTP/1 request whose body it has not read to the end: it goes out at
// once (answerFirst), and ServeHTTP's end lingers on the rest of the body
// (Proxy.linger).
func (c *batchingWriter) refusing() {
	if c.reqBody == nil || c.reqBody.ended.Load() {
		return
	}
	answerFirst(c.ResponseWriter)
	c.lingers = true
}

// armDeadline gives the next write to the client timeout from now.
func (c *batchingWriter) armDeadline() {
	if c.span != nil {
		_ = c.span.SetSendSpan(c.timeout)
	} else if c.deadline != nil {
		_ = c.deadline.SetWriteDeadline(time.Now().Add(c.timeout))
	}
}

// batchMin is the smallest write worth batching: two full TLS records.
const batchMin = 32 << 10

func (c *batchingWriter) WriteHeader(code int) {
	// A 1xx (a forwarded 100 Continue) starts no response: an error may
	// still be answered after it.
	if c.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		c.status = code
		c.lateStatus = c.client != nil && c.client.Err() != nil
		if c.conn != nil && c.conn.ending(c.maxAge) {
			endConnection(c.ResponseWriter)
		}
		// A response Nexus sent without Content-Type goes out without one:
		// net/http would sniff the body and invent one (a manifest read
		// as "text/plain", which containerd takes for schema 1).
		if h := c.ResponseWriter.Header(); h["Content-Type"] == nil {
			h["Content-Type"] = nil
		}
	} else if code < 200 {
		// A 1xx from Nexus comes with the headers Nexus gave it, which no
		// rewrite saw (a 103's Link names a node): only "100 Continue"
		// means anything to a registry client, and it goes bare.
		// ReverseProxy clears the map after, as it does here.
		clear(c.ResponseWriter.Header())
		if code != http.StatusContinue || c.http10 {
			// HTTP/1.0 has no 1xx (RFC 9110 15.2): its client would
			// read the 100 as the final answer, and the real one as
			// its body.
			return
		}
		// net/http writes a 1xx to the socket at once (HTTP/1: from the
		// transport's goroutine reading Nexus's answer, which waits on it).
		if c.arm() {
			defer c.untimed()
		}
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *batchingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
		c.lateStatus = c.client != nil && c.client.Err() != nil
	}
	if c.pieces && len(b) > h2SendQuantum {
		return c.writePieces(b)
	}
	if c.arm() {
		defer c.untimed()
	}
	if c.batch != nil && len(b) >= batchMin {
		c.batch.BeginBatch()
		n, err := c.ResponseWriter.Write(b)
		if ferr := c.batch.EndBatch(); err == nil {
			err = ferr
		}
		c.n += int64(n)
		c.failed(err)
		return n, err
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	c.failed(err)
	return n, err
}

// h2SendQuantum is how much of a response an HTTP/2 stream must take
// within --send-timeout: HTTP/1's floor (mux's sendQuantum); also the most
// bytes_out misses of a stream reset mid-write (batchingWriter.pieces). Each write
// there has its own deadline, and a write is up to a 512 KiB copy: four
// layers pulled at once over a 256 kbit/s link (~8 KB/s each) took over
// 60 s per write and were reset while they moved.
const h2SendQuantum = 64 << 10

// writePieces writes b in h2SendQuantum pieces, each under a deadline of
// its own when writes are timed.
func (c *batchingWriter) writePieces(b []byte) (int, error) {
	timed := c.timeEvery && c.deadline != nil
	if timed {
		defer c.untimed()
	}
	n := 0
	for n < len(b) {
		if timed {
			c.armDeadline()
		}
		m, err := c.ResponseWriter.Write(b[n:min(n+h2SendQuantum, len(b))])
		n += m
		c.n += int64(m)
		if err != nil {
			c.failed(err)
			return n, err
		}
	}
	return n, nil
}

func (c *batchingWriter) failed(err error) {
	if err != nil && c.werr == nil {
		c.werr = err
	}
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (c *batchingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Flush keeps streaming responses streaming through the wrapper.
func (c *batchingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		if c.arm() {
			defer c.untimed()
		}
		f.Flush()
	}
}

// arm bounds the next write or flush; it reports whether the deadline
// must be cleared after it (timeEvery: a method, not a returned closure,
// which would be an allocation per write). HTTP/1's stays: net/http
// clears it once the response is finished.
func (c *batchingWriter) arm() bool {
	c.armDeadline()
	return c.deadline != nil && c.timeEvery
}

func (c *batchingWriter) untimed() { _ = c.deadline.SetWriteDeadline(time.Time{}) }

// setReadDeadline sets the read deadline unless the handler returned; it
// reports whether it did.
func (c *countingBody) setReadDeadline(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handlerGone {
		return false
	}
	_ = c.deadline.SetReadDeadline(t)
	return true
}

// lastDeadline is the handler's last word on the read deadline (zero: none
// set); reads after it set none.
func (c *countingBody) lastDeadline(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.IsZero() {
		_ = c.deadline.SetReadDeadline(t)
	}
	c.handlerGone = true
}

// countingBody counts request body bytes. The transport may still be
// reading the body after ServeHTTP returns (Nexus answered 401 before
// reading it), hence the atomic.
type countingBody struct {
	io.ReadCloser
	n      atomic.Int64
	failed atomic.Pointer[error] // the client's body failure (clientbodyerr.go)
	// deadline bounds each read by timeout (nil: none). net/http clears
	// it when the body is done (its read ahead starts without one), so no
	// read after the end may set it again: that read ahead would fail at
	// it and cancel the request while Nexus still works on the answer.
	deadline readDeadliner
	timeout  time.Duration
	// untime clears the deadline once a read returns (HTTP/2): there it is
	// a timer that fails the body whether or not a read waits, and Nexus's
	// own pauses between reads are not the client's.
	untime bool
	// mu orders the reads' deadline calls with the handler's end
	// (lastDeadline): the transport may still read the body after it,
	// when the deadlines are no longer the handler's to set (HTTP/2's
	// crash on a stream the handler let go of).
	mu          sync.Mutex
	handlerGone bool
	// cont arms the write deadline before the first read (nil: no need):
	// over HTTP/1 that read makes net/http write "100 Continue" to the
	// socket at once, from the goroutine sending the body to Nexus.
	cont  *batchingWriter
	ended atomic.Bool // Read returned an error: io.EOF, or the body failed
	// waited and moved are the time reads spent waiting for the client,
	// and the bytes they brought, since the last bodyProgress bytes: the
	// timeout is spent over all of them, so a client that trickles a
	// byte at a time cannot hold its Nexus connection for good. Time
	// Nexus takes between reads is not counted.
	waited time.Duration
	moved  int64
}

// bodyProgress is how much of a request body must come within each
// --body-timeout of waiting for the client (~1 KiB/s at the default).
const bodyProgress = 64 << 10

func (c *countingBody) Read(b []byte) (int, error) {
	if c.cont != nil {
		c.mu.Lock()
		if !c.handlerGone {
			c.cont.armDeadline()
		}
		c.mu.Unlock()
		c.cont = nil
	}
	var start time.Time
	if c.deadline != nil && !c.ended.Load() {
		start = time.Now()
		if !c.setReadDeadline(start.Add(c.timeout - c.waited)) {
			start = time.Time{}
		}
	}
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	if !start.IsZero() {
		if c.untime {
			c.setReadDeadline(time.Time{})
		}
		if c.moved += int64(n); c.moved >= bodyProgress {
			c.waited, c.moved = 0, 0
		} else {
			c.waited += time.Since(start)
		}
	}
	if err != nil {
		c.ended.Store(true)
	}
	return n, c.bodyError(err)
}
