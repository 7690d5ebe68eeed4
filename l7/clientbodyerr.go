package l7

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nexmux/nexmux/internal/logtext"
)

// bodyError wraps a failed read of the client's body as ErrClientBody and
// remembers it, so the answer blames the client, not Nexus. Only the
// first failure is kept (the transport may read again after it).
func (c *countingBody) bodyError(err error) error {
	if err == nil || err == io.EOF || errors.Is(err, ErrClientBody) {
		return err
	}
	err = fmt.Errorf("%w: %w", ErrClientBody, err)
	c.failed.CompareAndSwap(nil, &err)
	return err
}

// clientBodyErr is the client's body failure, if any.
func (c *countingBody) clientBodyErr() error {
	if c == nil {
		return nil
	}
	if p := c.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// clientBodyFailed answers a request whose body the client broke: 400 and,
// over HTTP/1, the connection closed (the client may still read after a
// half-close; if it is gone, nothing is lost). HTTP/2 frames each stream
// apart, so only this stream is broken: the connection's other streams go
// on, and so may it. It is logged as a client error, and Nexus
// never got a complete body: the transport aborted the upstream request
// without finishing it.
func (p *Proxy) clientBodyFailed(w http.ResponseWriter, r *http.Request, st *reqState, err error) {
	st.reason = p.cutBy("client error: ") + err.Error()
	msg := "client request body failed; answered 400"
	if p.cutting.Load() {
		msg = "request body cut by nexmux at the drain's end"
	}
	p.log.Info(msg, "method", logtext.Bound(r.Method), "path", logtext.Bound(r.URL.Path), "err", logtext.Bound(err.Error()))
	if cw, ok := w.(*batchingWriter); ok && cw.status != 0 {
		return // a response already started; the connection just ends
	}
	if r.ProtoMajor == 1 {
		endConnection(w)
	}
	if p.cutting.Load() {
		// nexmux closed the connection under a body its client was still
		// to send (one that stalled waits for that close): the drain's
		// end, answered as upstreamError answers it, not the 400 of a
		// broken body, which clients do not retry and the metrics count
		// as the client's error.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "nexmux: stopping; retry")
		return
	}
	writeError(w, http.StatusBadRequest, bodyErrorCode(st), "nexmux: the request body was incomplete or malformed")
}

// bodyErrorCode is the Registry error code of a broken request body.
func bodyErrorCode(st *reqState) string {
	if strings.Contains(st.judged, "/blobs/uploads") {
		return "BLOB_UPLOAD_INVALID"
	}
	return "UNKNOWN"
}

// errLostBody: lostBody's request.
var errLostBody = fmt.Errorf("%w: the stream ended with its headers, and its content-length names bytes", ErrClientBody)

// lostBody reports whether r, an HTTP/2 request whose HEADERS ended its
// stream, names a content-length other than 0: a malformed request (RFC 9113
// 8.1.1). net/http reads content-length only while the body is open, so
// Nexus would get the empty body as the whole one.
func lostBody(r *http.Request) bool {
	if r.ProtoMajor != 2 || r.ContentLength != 0 {
		return false
	}
	for _, v := range r.Header["Content-Length"] {
		if n, err := strconv.ParseUint(v, 10, 63); err != nil || n != 0 {
			return true
		}
	}
	return false
}
