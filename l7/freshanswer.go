package l7

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
)

// freshness refuses an answer that a reused connection to Nexus held
// before the request was sent on it. A node whose answer runs past its
// framing (a Content-Length shorter than its body, a body on a 204, a 304
// or a HEAD's answer) leaves bytes on its keep-alive connection; net/http
// closes the connection once its reader sees them with no request
// outstanding ("Unsolicited response"), but a request that takes the
// connection from the pool first is answered from them: another request's
// leftovers, whatever they say. No answer to a request can come before the
// request, so one whose first byte was read from the socket before the
// connection was handed to the request is not its answer, parsed or not
// (leftovers are often no answer at all): the request fails (as on a
// broken connection) and the connection is closed; a GET or HEAD, which
// Nexus may well have answered rightly, is sent again first (on another
// connection) up to staleRetries times.
//
// Bytes a node sends after the request went out cannot be told from its
// answer: that is HTTP/1.1's own limit.
//
// One freshness serves one request at a time (a failover's attempts and
// its resumes, one after another): it sees the connections through its
// ClientTrace, which its context carries (see context).
type freshness struct {
	// conn is the connection the Transport gave the request, when reused;
	// mark how many of its reads had brought bytes then; stale that the
	// answer's first byte was there before.
	conn  atomic.Pointer[upstreamConn]
	mark  atomic.Uint64
	stale atomic.Bool
	// forward1xx is the trace's Got1xxResponse (ReverseProxy's, which
	// passes a 1xx on to the client), n1xx how many Nexus sent.
	forward1xx func(int, textproto.MIMEHeader) error
	n1xx       atomic.Int32
	// The hooks, bound once (newFreshness): a method value is an
	// allocation each time it is taken.
	onConn      func(httptrace.GotConnInfo)
	onFirstByte func()
	on1xx       func(int, textproto.MIMEHeader) error
	onWrote     func(httptrace.WroteRequestInfo)
	// tries counts the round trips sent, conns the connections the
	// Transport gave them, wrote the requests it finished writing; dirty
	// that one ended in an error, a resume used f, or its trace is not
	// f's alone: whether the Transport may still use f (reusable).
	tries, conns, wrote atomic.Int32
	dirty               atomic.Bool
}

func newFreshness() *freshness {
	f := new(freshness)
	f.onConn, f.onFirstByte, f.on1xx = f.gotConn, f.gotFirstByte, f.got1xx
	f.onWrote = func(httptrace.WroteRequestInfo) { f.wrote.Add(1) }
	return f
}

// freshPool keeps freshness values with their hooks bound, for the
// requests that give theirs back (release).
var freshPool = sync.Pool{New: func() any { return newFreshness() }}

// takeFreshness is a freshness for one request.
func takeFreshness() *freshness { return freshPool.Get().(*freshness) }

// reusable reports whether the Transport is done with f's trace and
// context, so that f may serve another request. The Transport reads an
// answer on a goroutine of its own, which calls GotFirstResponseByte and
// Got1xxResponse: a round trip that returned its answer is past them, but
// one that returned early (an error: a cancel, a broken write) may leave
// that goroutine reading, and so may a connection the Transport gave up
// within a round trip to retry on another. It writes the request on
// another, which may still be writing when an early answer came:
// WroteRequest is the last it does with the trace. And a round trip given
// a connection other than an idle one may have a dial of its own going on,
// with f's context (gotConn).
func (f *freshness) reusable() bool {
	t := f.tries.Load()
	return !f.dirty.Load() && f.conns.Load() == t && f.wrote.Load() == t
}

// release gives f back for another request if it is reusable; f is not
// used after.
func (f *freshness) release() {
	if !f.reusable() {
		return
	}
	f.forward1xx = nil
	f.conn.Store(nil)
	f.tries.Store(0)
	f.conns.Store(0)
	f.wrote.Store(0)
	freshPool.Put(f)
}

// max1xx bounds the informational answers one attempt takes, as net/http's
// Transport did (max1xxResponses) before it left them to whoever traces
// them: ReverseProxy passes each on, so a node sending them without end
// would be bounded only by the header timeout. Nexus sends one 100.
const max1xx = 5

// errTooMany1xx fails an attempt past max1xx informational answers.
var errTooMany1xx = fmt.Errorf("Nexus sent more than %d informational (1xx) answers", max1xx)

// got1xx counts an informational answer and passes it on.
func (f *freshness) got1xx(code int, h textproto.MIMEHeader) error {
	if f.n1xx.Add(1) > max1xx {
		return errTooMany1xx
	}
	return f.forward1xx(code, h)
}

// errStaleAnswer fails a request answered from bytes its connection held
// before the request was sent.
var errStaleAnswer = errors.New("Nexus's connection held bytes past its last answer's end: no answer to this request")

// staleRetries bounds how often a read is sent again after a stale answer
// (the pool may hold more connections of the same node with leftovers).
const staleRetries = 2

// tracedCtx answers for the ClientTrace its context holds with trace,
// which carries that trace's hooks (freshness.context): what
// httptrace.WithClientTrace would give without composing (reflection on
// every request), and without a context.WithValue per request. With no
// trace it hides the one its context holds.
type tracedCtx struct {
	context.Context
	trace *httptrace.ClientTrace
}

func (c *tracedCtx) Value(key any) any {
	v := c.Context.Value(key)
	if _, ok := v.(*httptrace.ClientTrace); ok {
		if c.trace == nil {
			return nil
		}
		return c.trace
	}
	return v
}

// hideTrace is ctx without the ClientTrace it holds.
func hideTrace(ctx context.Context) context.Context { return &tracedCtx{Context: ctx} }

// context is ctx with f's trace. Once per request: the lookups it costs
// are cheapest on the request's own context, before WithoutCancel (whose
// Value allocates). t holds the trace and its context when ctx's trace
// is the only one; nil: a new one. A t is filled once and never reused:
// the Transport's dial may read it after the request ended (requestTrace).
func (f *freshness) context(ctx context.Context, t *requestTrace) context.Context {
	old := httptrace.ContextClientTrace(ctx)
	f.n1xx.Store(0)
	f.forward1xx = nil
	if old != nil && old.Got1xxResponse != nil {
		f.forward1xx = old.Got1xxResponse
	}
	if old == nil || old.GotConn != nil || old.GotFirstResponseByte != nil || old.WroteRequest != nil {
		// Nothing to carry, or hooks of the same name: composed, and
		// not f's alone.
		f.dirty.Store(true)
		t = &requestTrace{trace: httptrace.ClientTrace{GotConn: f.onConn, GotFirstResponseByte: f.onFirstByte}}
		if f.forward1xx != nil {
			// Composed hooks answer with the old one's error, not
			// got1xx's: the old trace goes without its own.
			carried := *old
			carried.Got1xxResponse = nil
			t.trace.Got1xxResponse = f.on1xx
			ctx = httptrace.WithClientTrace(hideTrace(ctx), &carried)
		}
		return httptrace.WithClientTrace(ctx, &t.trace)
	}
	if t == nil {
		t = new(requestTrace)
	}
	t.trace = *old
	t.trace.GotConn, t.trace.GotFirstResponseByte, t.trace.WroteRequest = f.onConn, f.onFirstByte, f.onWrote
	if f.forward1xx != nil {
		t.trace.Got1xxResponse = f.on1xx
	}
	t.ctx = tracedCtx{ctx, &t.trace}
	return &t.ctx
}

// requestTrace is one request's ClientTrace and the context that carries
// it, in one allocation (the first attempt's is in its reqState). Not
// part of the pooled freshness: the Transport's dial for a request reads
// both on a goroutine of its own, which outlives the request when another
// connection came free first. Only the hooks, which that goroutine never
// calls, lead to the freshness.
type requestTrace struct {
	ctx   tracedCtx
	trace httptrace.ClientTrace
}

func (f *freshness) gotConn(info httptrace.GotConnInfo) {
	f.conns.Add(1)
	if !info.WasIdle {
		// Not taken from the idle pool at once: the Transport may have
		// begun a dial for the request, which goes on after the request
		// got another connection and ended. It reads the request's own
		// trace and context (requestTrace), not f; f is not lent on
		// all the same, as nothing more is known of that goroutine.
		f.dirty.Store(true)
	}
	f.stale.Store(false) // the Transport's own retry takes another connection
	c := info.Conn
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn() // an https:// upstream: the socket below TLS
	}
	uc, _ := c.(*upstreamConn)
	if uc == nil || !info.Reused {
		f.conn.Store(nil) // a new connection holds nothing of an earlier answer
		return
	}
	f.mark.Store(uc.reads.Load())
	f.conn.Store(uc)
}

// gotFirstByte runs as the Transport starts reading the answer (its
// reader's goroutine): a first byte that no read since gotConn brought
// was there before the request.
func (f *freshness) gotFirstByte() {
	if c := f.conn.Load(); c != nil && c.reads.Load() == f.mark.Load() {
		f.stale.Store(true)
	}
}

// roundTrip sends r, whose context carries f's trace, through next.
func (f *freshness) roundTrip(next http.RoundTripper, r *http.Request) (*http.Response, error) {
	for try := 0; ; try++ {
		f.conn.Store(nil)
		f.stale.Store(false)
		f.tries.Add(1)
		resp, err := next.RoundTrip(r)
		if err != nil {
			f.dirty.Store(true)
		}
		if !f.stale.Load() {
			return resp, err
		}
		if err == nil {
			resp.Body.Close()
		}
		// A bodiless stale answer has put the connection back in the
		// pool already, where the real answer would come unasked.
		if c := f.conn.Load(); c != nil {
			_ = c.Close()
		}
		if try == staleRetries || !replayable(r) || r.Context().Err() != nil {
			return nil, errStaleAnswer
		}
	}
}

// replayable: a request that may be sent twice (Nexus may have acted on
// the first), and can be: no body.
func replayable(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.Body == nil || r.Body == http.NoBody)
}
