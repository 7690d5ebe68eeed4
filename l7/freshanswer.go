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
// request, so one parsed without a byte read from the socket since the
// connection was handed to the request is not its answer: the request
// fails (as on a broken connection) and the connection is closed.
//
// Bytes a node sends after the request went out cannot be told from its
// answer: that is HTTP/1.1's own limit.
type freshAnswers struct{ next http.RoundTripper }

// errStaleAnswer fails a request answered from bytes its connection held
// before the request was sent.
var errStaleAnswer = errors.New("Nexus's connection held bytes past its last answer's end: no answer to this request")

// freshness is one request's view of its connection: the connection the
// Transport gave it (when reused) and how many reads had brought bytes
// then.
type freshness struct {
	conn atomic.Pointer[upstreamConn]
	mark atomic.Uint64
}

func (f *freshness) gotConn(info httptrace.GotConnInfo) {
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

func (f freshAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	fr := new(freshness)
	out := r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{GotConn: fr.gotConn}))
	resp, err := f.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	resp.Request = r
	if c := fr.conn.Load(); c != nil && c.reads.Load() == fr.mark.Load() {
		resp.Body.Close()
		// A bodiless stale answer has put the connection back in the
		// pool already, where the real answer would come unasked.
		_ = c.Close()
		return nil, errStaleAnswer
	}
	return resp, nil
}
