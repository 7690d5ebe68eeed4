package l7

import (
	"net/http"
	"time"
)

// localRefusalsBeforeClose: a connection whose last requests were all
// refused by nexmux itself (nothing for Nexus in them) is closed after this
// many in a row. Registry clients do not do that; a client holding
// connections open with "GET /v3/" every few seconds does.
const localRefusalsBeforeClose = 3

// DefaultMaxConnAge is the default --max-conn-age.
const DefaultMaxConnAge = 10 * time.Minute

// endConnection asks net/http to close the connection after this response:
// HTTP/1.1 "Connection: close", HTTP/2 a GOAWAY (net/http turns the header
// into one). Requests in flight on other streams finish.
func endConnection(w http.ResponseWriter) { w.Header().Set("Connection", "close") }

// beforeForward applies the connection's policy to a request going to
// Nexus: an old (--max-conn-age) or revoked connection ends after it. The
// answer's WriteHeader judges that (batchingWriter.conn), so one revoked or
// grown old while Nexus answers ends too; age and revocation only grow, so
// judging here as well would only read the clock twice.
func (p *Proxy) beforeForward(ci *ConnInfo, w *batchingWriter) {
	w.conn, w.maxAge = ci, p.maxAge
	ci.refusedInARow.Store(0)
	ci.forwarded.Store(true)
}

// RefusedBeforeHandler counts a request net/http's HTTP/2 server refused
// itself (a stream reset, its own 400 or 431), which the HTTP stage never
// saw, as a local refusal: it reports whether the connection is to end.
// Each such stream restarted --idle-timeout, so without this a client
// kept its connection for good on requests nothing served.
func (ci *ConnInfo) RefusedBeforeHandler() bool {
	return ci.refusedInARow.Add(1) >= localRefusalsBeforeClose
}

// refuseLocal answers a request nexmux refuses itself, and ends the
// connection when it has produced nothing else lately.
func (p *Proxy) refuseLocal(w http.ResponseWriter, st *reqState, status int, code, msg string) {
	st.reason = msg
	if ci := st.ci; ci != nil {
		if ci.refusedInARow.Add(1) >= localRefusalsBeforeClose || p.ending(ci) {
			endConnection(w)
		}
	}
	writeError(w, status, code, msg)
}

// refuseForLoad answers a request refused for the client's load (429), not
// for what it asks: the client retries it after Retry-After, so it counts
// toward no refusals in a row, and the connection stays unless it is old or
// revoked (a handshake per few retries would add to the load).
func (p *Proxy) refuseForLoad(w http.ResponseWriter, st *reqState, status int, code, msg string) {
	st.reason = msg
	if ci := st.ci; ci != nil && p.ending(ci) {
		endConnection(w)
	}
	writeError(w, status, code, msg)
}

// ending reports whether ci is to end after its current response: revoked,
// or past --max-conn-age.
func (p *Proxy) ending(ci *ConnInfo) bool { return ci.ending(p.maxAge) }

func (ci *ConnInfo) ending(maxAge time.Duration) bool {
	return ci.Revoked.Load() || maxAge > 0 && !ci.Opened.IsZero() && time.Since(ci.Opened) > maxAge
}
