package l7

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
)

// freshAnswers refuses an answer that a reused connection to Nexus held
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
// broken connection) and the connection is closed; a GET
// or HEAD, which Nexus may well have answered rightly, is sent again first
// (on another connection) up to staleRetries times.
//
// Bytes a node sends after the request went out cannot be told from its
// answer: that is HTTP/1.1's own limit.
type freshAnswers struct{ next http.RoundTripper }

// errStaleAnswer fails a request answered from bytes its connection held
// before the request was sent.
var errStaleAnswer = errors.New("Nexus's connection held bytes past its last answer's end: no answer to this request")

// freshness is one request's view of its connection: the connection the
// Transport gave it (when reused), how many reads had brought bytes then,
// and whether the answer's first byte was already there (stale).
type freshness struct {
	conn  atomic.Pointer[upstreamConn]
	mark  atomic.Uint64
	stale atomic.Bool
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

// staleRetries bounds how often a read is sent again after a stale answer
// (the pool may hold more connections of the same node with leftovers).
const staleRetries = 2

func (f freshAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	fr := new(freshness)
	out := r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		GotConn: fr.gotConn, GotFirstResponseByte: fr.gotFirstByte}))
	for try := 0; ; try++ {
		resp, err := f.next.RoundTrip(out)
		if !fr.stale.Load() {
			if err != nil {
				return nil, err
			}
			resp.Request = r
			return resp, nil
		}
		// Parsed or not (leftovers are often no answer at all), it was
		// not this request's.
		if err == nil {
			resp.Body.Close()
		}
		// A bodiless stale answer has put the connection back in the
		// pool already, where the real answer would come unasked.
		if c := fr.conn.Load(); c != nil {
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
