package l7

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
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
	// trace is the request's ClientTrace: the hooks its context had
	// (ReverseProxy's), and freshness's own.
	trace httptrace.ClientTrace
	// conn is the connection the Transport gave the request, when reused;
	// mark how many of its reads had brought bytes then; stale that the
	// answer's first byte was there before.
	conn  atomic.Pointer[upstreamConn]
	mark  atomic.Uint64
	stale atomic.Bool
	// hide wraps the request's context (see context): here, not boxed on
	// its own, it costs no allocation.
	hide hideTrace
	// forward1xx is the trace's Got1xxResponse (ReverseProxy's, which
	// passes a 1xx on to the client), n1xx how many Nexus sent.
	forward1xx func(int, textproto.MIMEHeader) error
	n1xx       atomic.Int32
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

// hideTrace hides the ClientTrace a context holds from
// httptrace.WithClientTrace, whose composing of two traces goes through
// reflection on every request: freshness's trace carries its hooks itself.
type hideTrace struct{ context.Context }

func (c hideTrace) Value(key any) any {
	v := c.Context.Value(key)
	if _, ok := v.(*httptrace.ClientTrace); ok {
		return nil
	}
	return v
}

// context is ctx with f's trace. Once per request: the lookups it costs
// are cheapest on the request's own context, before WithoutCancel (whose
// Value allocates).
func (f *freshness) context(ctx context.Context) context.Context {
	old := httptrace.ContextClientTrace(ctx)
	f.n1xx.Store(0)
	f.forward1xx = nil
	if old != nil && old.Got1xxResponse != nil {
		f.forward1xx = old.Got1xxResponse
	}
	if old == nil || old.GotConn != nil || old.GotFirstResponseByte != nil {
		// Nothing to carry, or hooks of the same name: composed.
		f.trace = httptrace.ClientTrace{GotConn: f.gotConn, GotFirstResponseByte: f.gotFirstByte}
		if f.forward1xx != nil {
			// Composed hooks answer with the old one's error, not
			// got1xx's: the old trace goes without its own.
			carried := *old
			carried.Got1xxResponse = nil
			f.trace.Got1xxResponse = f.got1xx
			ctx = httptrace.WithClientTrace(hideTrace{ctx}, &carried)
		}
		return httptrace.WithClientTrace(ctx, &f.trace)
	}
	f.trace = *old
	f.trace.GotConn, f.trace.GotFirstResponseByte = f.gotConn, f.gotFirstByte
	if f.forward1xx != nil {
		f.trace.Got1xxResponse = f.got1xx
	}
	f.hide = hideTrace{ctx}
	return httptrace.WithClientTrace(&f.hide, &f.trace)
}

func (f *freshness) gotConn(info httptrace.GotConnInfo) {
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
		resp, err := next.RoundTrip(r)
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
