package l7

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexmux/nexmux/internal/perclient"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// maxReplayBody is the largest manifest PUT body kept to send again on
// another node (manifests are small: Docker caps them at 4 MiB).
const maxReplayBody = 4 << 20

// maxReplayTotal bounds the manifest PUT bodies held for a retry at once,
// over every client: beyond it a PUT streams to its first node and, like
// any body already sent, does not move on. Bodies are read from the
// client before Nexus has seen the credentials, so without a bound any
// client could make nexmux hold max-requests-per-client x 4 MiB.
const maxReplayTotal = 64 << 20

// replayBudget counts the bytes of held manifest PUT bodies.
type replayBudget struct{ held atomic.Int64 }

// take reserves n bytes, or reports that the budget is spent.
func (b *replayBudget) take(n int64) bool {
	if b.held.Add(n) > maxReplayTotal {
		b.held.Add(-n)
		return false
	}
	return true
}

func (b *replayBudget) give(n int64) { b.held.Add(-n) }

// askTimeout bounds asking the nodes whether they know an upload session.
const askTimeout = 2 * time.Second

// refusal is an answer nexmux gives itself instead of Nexus's
// (upstreamError writes it). close ends the connection so an unread body
// (a 1 GiB PATCH) is never read.
type refusal struct {
	status     int
	code, msg  string
	retryAfter string
	// close: the request's body may be left unread. Its HTTP/1 connection
	// ends after the answer (closing beats draining a 1 GiB PATCH); over
	// HTTP/2 net/http resets only the stream. With nothing unread the
	// connection stays: a client retrying through an outage would pay a
	// handshake per retry.
	close bool
}

func (r *refusal) Error() string { return r.msg }

var errNodeDown = errors.New("upstream node found down while waiting for its answer")

// failover sends each request to the node the health table picks and moves
// it to the next one when that is safe: before the response started, for
// bodiless requests, requests none of whose body was sent, and buffered
// manifest PUTs. 4xx answers never move.
type failover struct {
	up   *Upstreams
	next http.RoundTripper
	cut  *atomic.Bool // Proxy.cutting (nil: never)
	// fair: per-client limits are on, so each client address takes its
	// share of a node's places (nodePool); off, every client may come
	// through one address (a balancer's).
	fair       bool
	ipv6Prefix int // --per-client-ipv6-prefix: the client a request counts as
}

// client is the address whose share of a node's places a request with ctx
// takes (invalid: no share).
func (f failover) client(ctx context.Context) netip.Addr {
	if !f.fair {
		return netip.Addr{}
	}
	ci := FromContext(ctx)
	if ci == nil || !ci.Client.Addr().IsValid() {
		return netip.Addr{}
	}
	return perclient.Key(ci.Client.Addr(), f.ipv6Prefix)
}

// cutting reports that the drain's end cut the connections to Nexus: a
// failed attempt is neither the node's fault nor sent on to another.
func (f failover) cutting() bool { return f.cut != nil && f.cut.Load() }

// request classes
const (
	classRead = iota
	classDigest
	classWrite
	classUpload // a follow-up on an open upload session
)

func classify(method, sub string) (class int, digest, uuid string) {
	// The token endpoint is a read whatever the method: containerd asks
	// it with an OAuth2 form POST, and falls back to GET only on 401, 404
	// or 405, so a "no writes" 503 on read-only nodes failed every pull.
	if route.IsTokenPath(sub) {
		return classRead, "", ""
	}
	// Every class is decided by the last path segment and what precedes it.
	slash := strings.LastIndexByte(sub, '/')
	dir, last := sub[:slash+1], sub[slash+1:]
	if last != "" && strings.HasSuffix(dir, "/blobs/uploads/") {
		return classUpload, "", last
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return classWrite, "", ""
	case http.MethodGet, http.MethodHead:
		if strings.Contains(last, ":") && (strings.HasSuffix(dir, "/blobs/") || strings.HasSuffix(dir, "/manifests/")) {
			return classDigest, last, ""
		}
	}
	return classRead, "", ""
}

func (f failover) RoundTrip(r *http.Request) (*http.Response, error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	set := f.up.set
	sub, repo := r.URL.Path, ""
	if st != nil {
		sub, repo = st.judged, st.repo
	}
	rest, tag := upstream.SplitTag(r.URL.RawQuery)
	r.URL.RawQuery = rest
	class, digest, uuid := classify(r.Method, sub)
	if st != nil && class == classUpload {
		st.tag = tag
	}
	blobGet := class == classDigest && r.Method == http.MethodGet && strings.Contains(sub, "/blobs/")

	var buf [4]*upstream.Node // the node choice allocates nothing
	var cands []*upstream.Node
	var err error
	pk, key := upstream.Read, ""
	switch class {
	case classUpload:
		cands, err = f.uploadNode(r, tag, uuid)
		if err == nil {
			err = f.frozenUpload(r, cands[0])
		}
	case classDigest:
		pk, key = upstream.ReadDigest, repo+"@"+digest
		cands, err = set.PickAppend(buf[:0], pk, key)
	case classWrite:
		pk = upstream.Write
		cands, err = set.PickAppend(buf[:0], pk, "")
	default:
		cands, err = set.PickAppend(buf[:0], pk, "")
	}
	// Ejected nodes whose probes pass come after Pick's, looked up only
	// when the request reaches the last of those: passive ejection
	// steers requests away, but must not hand a client the 503 or reset
	// of the only node left in rotation while a recovered node could
	// answer (Pick falls back on them the same way when none serves).
	ejectedAdded := class == classUpload || len(cands) >= set.Size()
	picked := len(cands)
	if err != nil {
		closeBody(r)
		return nil, refusalFor(err)
	}

	body := r.Body != nil && r.Body != http.NoBody
	var sb *sharedBody
	var replay []byte
	if body {
		// Buffered only where it can be sent again: with another node to
		// go to, and within the budget (held until this call returns).
		if r.Method == http.MethodPut && strings.Contains(sub, "/manifests/") && r.ContentLength >= 0 && r.ContentLength <= maxReplayBody &&
			len(cands) > 1 && f.up.replay.take(r.ContentLength) {
			defer f.up.replay.give(r.ContentLength)
			// net/http ends the body at its Content-Length: exactly what
			// the budget holds.
			replay = make([]byte, r.ContentLength)
			if _, err = io.ReadFull(r.Body, replay); err != nil {
				return nil, errors.Join(ErrClientBody, err)
			}
		} else {
			sb = newSharedBody(r.Body, r.Body)
		}
	}
	kind := "read"
	// An upload's closing PUT often has no body, and is a write all the
	// same: a read-only node refuses it (frozenRefusal).
	if body || class == classWrite || class == classUpload && r.Method != http.MethodGet && r.Method != http.MethodHead {
		kind = "write"
	}
	// move reports whether the request may go on to the next node, and
	// if so gives the current attempt up (see sharedBody).
	// A client that has left is not sent on: the attempt outlives it only
	// to hold its slot while Nexus works.
	move := func(last bool) bool {
		return !last && r.Context().Err() == nil && !f.cutting() && (sb == nil || sb.next())
	}
	// suspects answered 502/503/504 and the request moved on: whether
	// that counts toward their passive ejection depends on the next answer.
	type suspect struct {
		n   *upstream.Node
		why string
	}
	var suspects []suspect
	var lastErr error
	// Every attempt, and a blob's resumes, watch their connections for an
	// earlier answer's leftovers (freshness); a later attempt with a
	// freshness of its own, as the Transport may still be reading an
	// abandoned one's answer.
	// The request's own only on its first call: a repository fallback
	// calls again, while the Transport may still use the first call's.
	var fr *freshness
	var base context.Context
	if st != nil && st.fresh == nil {
		// Given back when the request ends (ServeHTTP). Its trace is
		// the request's state's, filled once, here.
		st.fresh = takeFreshness()
		fr = st.fresh
		base = fr.context(r.Context(), &st.trace)
	} else {
		fr = newFreshness()
		base = fr.context(r.Context(), nil)
	}
	// askedAfter: an upload follow-up's node refused, and the nodes were
	// asked once for another that knows the session.
	askedAfter := false
	queue := poolQueueTimeout
	client := f.client(r.Context())
	// passed: nodes passed over for room (the client at its share, or
	// every place taken). The last node tried is then not the last that
	// may serve: found down, the request goes back to them.
	var passed []*upstream.Node
	// Indexed: an upload follow-up may add the node found by asking.
	for i := 0; i < len(cands); i++ {
		if !ejectedAdded && i == len(cands)-1 {
			ejectedAdded = true
			for _, e := range set.Ejected(pk, key) {
				if !slices.Contains(cands, e) {
					cands = append(cands, e)
				}
			}
		}
		n := cands[i]
		last := i == len(cands)-1
		if i > 0 {
			fr = newFreshness()
			base = fr.context(r.Context(), nil)
		}
		// A client at its share of Pick's last node waits there as
		// before: an ejected node is for failures, not for room.
		sl, ok := f.up.acquireOr(r.Context(), n.Host, client, &queue, !last && i+1 < picked)
		if !ok {
			if r.Context().Err() != nil {
				return nil, r.Context().Err()
			}
			if move(last) {
				passed = append(passed, n)
				set.Failover(kind, "busy")
				continue
			}
			sb.finish()
			msg := "nexmux: every connection to Nexus is busy; retry shortly"
			if client.IsValid() && f.up.othersOnly(n.Host) {
				msg = "nexmux: this client address holds its share of the connections to Nexus; retry shortly"
			}
			// A replayed body was read whole: nothing is left unread.
			return nil, &refusal{status: http.StatusServiceUnavailable, code: "UNAVAILABLE", retryAfter: "1", close: body && replay == nil, msg: msg}
		}
		if last && len(passed) > 0 && n.Alive().Err() != nil && move(false) {
			// Found down while this request waited for a place there
			// (given back by the requests that left it then): not sent
			// to it, but back to the nodes passed over for room.
			sl.release()
			cands = append(cands, passed...)
			passed = nil
			set.Failover(kind, "down")
			continue
		}
		if err := r.Context().Err(); err != nil && r.ProtoMajor > 1 {
			// Gone before anything was sent (a stream reset right after
			// its HEADERS, a rapid-reset flood): Nexus is not asked.
			// Not HTTP/1: net/http cancels on a client's half-close too,
			// and that client still reads its answer.
			sl.release()
			return nil, err
		}
		a := attempt{n: n, slot: sl}
		// The request's first attempt keeps its context and URL in the
		// request's state (an allocation less each); a later one, or a
		// repository fallback's, has its own.
		var det *detached
		var u *url.URL
		if st != nil && !st.attemptTaken {
			st.attemptTaken = true
			det, u = &st.det, &st.url
		} else {
			det, u = new(detached), new(url.URL)
		}
		// A client that leaves does not end the attempt: Nexus's thread
		// works on until it answers (Jetty notices a closed connection
		// only when it writes), so the slot is held until then, or a
		// client that sends and leaves in a loop would pile requests
		// on Nexus beyond --upstream-max-conns. A body the client stops
		// sending still ends it, and so does its answer.
		ctx := detach(det, base)
		stopWatch := func() bool { return false }
		// A node found down while its answer is awaited gives the request
		// up so it moves on at once where there is a next node (or one
		// passed over for room). On the last (an upload follow-up's one
		// node), only when another node serves: the client, answered at
		// once, retries there (docker restarts the layer's upload) instead
		// of waiting minutes on a frozen node. With none serving, the
		// answer may still come (a lone node whose probes time out under
		// load keeps its traffic). Already down: fail open, nothing to
		// watch.
		// A blob's body can be cut for the same reason (resumable).
		// Alive takes the node's lock: never with a single node, where
		// the last node has no other to defer to.
		// A blob's request can always be ended: its body may stall, or
		// its HTTP/2 client reset (resumable).
		watch := !last || len(passed) > 0
		guard := !watch && set.Size() > 1
		if watch || guard || blobGet {
			if alive := n.Alive(); alive.Err() == nil || blobGet {
				ctx, a.cancel = context.WithCancelCause(ctx)
				if alive.Err() == nil {
					cancel := a.cancel
					switch {
					case watch:
						stopWatch = context.AfterFunc(alive, func() { cancel(errNodeDown) })
					case guard:
						write := kind == "write"
						stopWatch = context.AfterFunc(alive, func() {
							if set.OtherServes(n, write) {
								cancel(errNodeDown)
							}
						})
					}
				}
			}
		}
		// A shallow copy: the transport never writes a request's headers,
		// and a resume deep-copies its own (resumable).
		out := r.WithContext(ctx)
		*u = *r.URL
		u.Scheme, u.Host = n.Scheme, n.Host
		out.URL = u
		switch {
		case replay != nil:
			out.Body = io.NopCloser(bytes.NewReader(replay))
			held := replay // captured alone, replay itself stays off the heap
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(held)), nil }
		case sb != nil:
			// An upload follow-up's body stays the client's past its
			// one node: if that node refuses, another node may know
			// the session (sb.finish closes it on every other end). So
			// does one past a node passed over for room: found down, the
			// request goes back there, with the body the Transport closed
			// unsent (a dial given up).
			out.Body = sb.attempt(!watch && class != classUpload)
		}
		n.Start()
		t0 := time.Now()
		resp, err := fr.roundTrip(f.next, out)
		stopWatch()
		if err == nil && (resp.StatusCode < 100 || resp.StatusCode > 599) {
			// Three digits net/http takes, but no HTTP status: a broken
			// answer, as a malformed one is (ReverseProxy's WriteHeader
			// would panic on one below 100, the body left open).
			resp.Body.Close()
			err = fmt.Errorf("Nexus answered with status %d, outside HTTP's 100-599", resp.StatusCode)
		}
		if err != nil {
			a.done()
			switch {
			case f.cutting():
				sb.finish()
				return nil, err
			case r.Context().Err() != nil:
				sb.finish()
				return nil, err
			case sb != nil && sb.clientFailed() || errors.Is(err, ErrClientBody):
				sb.finish()
				return nil, errors.Join(ErrClientBody, err)
			case upstream.LocalDialFailure(err):
				// Short of descriptors or local ports: not the node's
				// fault, so nothing is reported. Nothing was sent, and
				// ports run out per destination: the next node may work.
				lastErr = err
				if move(last) {
					set.Failover(kind, "local")
					continue
				}
			case refused(err):
				set.ReportConnectFailure(n, err)
				lastErr = err
				if last && len(passed) > 0 {
					// Nothing was sent: back to the nodes passed over
					// for room, as when found down.
					cands = append(cands, passed...)
					passed, last = nil, false
				}
				if move(last) {
					set.Failover(kind, "connect")
					continue
				}
				if class == classUpload && !onlyNode(set, n) {
					// The session's node refuses connections: now down,
					// so ask the others, as when the probes had already
					// found it down (Nexus may share sessions). Also a
					// node a reload removed, where one node is left.
					// Nothing of the body was sent: it can go on.
					if !askedAfter {
						askedAfter = true
						m, ferr := f.findUpload(r, nil)
						if ferr == nil {
							// Checked as the node uploadNode finds.
							ferr = f.frozenUpload(r, m)
						}
						if ferr == nil && (sb == nil || sb.next()) {
							cands = append(cands, m)
							set.Failover(kind, "connect")
							continue
						}
						if ferr != nil {
							sb.finish()
							return nil, refusalFor(ferr)
						}
					}
					sb.finish()
					return nil, f.uploadGone()
				}
			case errors.Is(context.Cause(ctx), errNodeDown):
				lastErr = errors.Join(errNodeDown, err)
				if reached(r, fr) {
					break // see reached
				}
				if last && len(passed) > 0 {
					// Back to the nodes passed over for room, within
					// what is left of the queue time.
					cands = append(cands, passed...)
					passed, last = nil, false
				}
				if move(last) {
					set.Failover(kind, "down")
					continue
				}
			default:
				lastErr = err
				if !reached(r, fr) && move(last) {
					// Counted once another node answers the same request,
					// as a 502/503/504 is: one every node breaks on (a
					// proxy repository's remote Nexus gives up on) is the
					// request's, and counted it would eject every node.
					suspects = append(suspects, suspect{n, err.Error()})
					set.Failover(kind, "reset")
					continue
				}
				// The last try: counted alone, and not against the last
				// node that serves this kind of request (as a 5xx), nor
				// when a node passed over for room was not asked.
				if len(suspects) == 0 && len(passed) == 0 && set.OtherUsable(n, kind == "write") {
					set.ReportResult(n, false, err.Error())
				}
			}
			sb.finish()
			return nil, lastErr
		}
		if !body {
			// With a body, the time to headers is mostly the client's
			// upload (minutes for a large layer), not the node's speed.
			n.ObserveSince(t0)
		}
		answered := false // not a 502/503/504
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			if move(last) {
				resp.Body.Close()
				a.done()
				if !frozenRefusal(n, kind, resp.StatusCode) {
					suspects = append(suspects, suspect{n, "status " + resp.Status})
				}
				set.Failover(kind, "status")
				continue
			}
			// Every node tried answered 5xx: the request is at fault (a
			// proxy repository whose remote is down, an offline
			// repository), not the nodes; only a lone answer counts,
			// and never against the last node that serves this kind of
			// request: ejecting it would turn one repository's 503 into
			// everyone's. Nor is it lone when a node was passed over for
			// room: that node was not asked, and might answer the same.
			if len(suspects) == 0 && len(passed) == 0 && r.Context().Err() == nil && set.OtherUsable(n, kind == "write") && !frozenRefusal(n, kind, resp.StatusCode) {
				set.ReportResult(n, false, "status "+resp.Status)
			}
		default:
			// Another node answers: the 5xx were the nodes' own.
			for _, sp := range suspects {
				set.ReportResult(sp.n, false, sp.why)
			}
			// The node's run of failures ends below: a blob's 200 must not
			// clear the breaks of the pulls before until its body is whole.
			set.CountAnswer(n, resp.StatusCode)
			answered = true
		}
		sb.finish()
		// Nexus's trailers never reach the client (doneBody): none
		// announced, none sent.
		resp.Trailer = nil
		// The request's first answer's wrapper is in its state, as its
		// first attempt's context and URL are.
		var d *doneBody
		if st != nil && !st.doneTaken {
			st.doneTaken = true
			d = &st.done
			d.a, d.resp = a, resp
		} else {
			d = &doneBody{a: a, resp: resp}
		}
		if blobGet && f.resumable(out, fr, r.Context(), n, repo+"@"+digest, resp, a.cancel, d.release) {
			// Reported served once its body is whole (resumeBody.Read).
		} else if answered {
			set.ReportResult(n, true, "")
		}
		d.ReadCloser = resp.Body
		resp.Body = d
		return resp, nil
	}
	if lastErr == nil {
		lastErr = upstream.ErrAllDown
	}
	return nil, lastErr
}

// reached reports a DELETE that may have reached Nexus: the Transport gave
// it a connection (fr counts them). It is not sent to another node: the
// first may have carried it out, and the second would then answer 404
// MANIFEST_UNKNOWN for what the client's DELETE removed, or, the first
// frozen with it queued, run it after the second's answer, deleting what
// was pushed meanwhile. The client gets the error and decides. Bodiless
// POSTs still move: a second upload session leaves the first unused, and
// a mount is the same mount again.
func reached(r *http.Request, fr *freshness) bool {
	return r.Method == http.MethodDelete && fr.conns.Load() > 0
}

// frozenUpload refuses a chunk or the closing PUT of an open upload, a
// write too, when its node n is read-only and no node takes writes: before
// its body is read rather than streamed to a frozen node. A draining node
// that takes writes finishes it.
func (f failover) frozenUpload(r *http.Request, n *upstream.Node) error {
	if (r.Method == http.MethodPatch || r.Method == http.MethodPut) && n.State() != upstream.Writable {
		var wb [4]*upstream.Node
		if _, err := f.up.set.PickAppend(wb[:0], upstream.Write, ""); errors.Is(err, upstream.ErrNoneWritable) {
			return err
		}
	}
	return nil
}

// onlyNode reports whether n is the set's one node: its refused connection
// is then Nexus being down, not an upload's node gone. Not while a node a
// reload removed drains: it may share the upload's session (Set.Lone).
func onlyNode(set *upstream.Set, n *upstream.Node) bool {
	return set.Lone() == n
}

// frozenRefusal reports a write's 503 from a node the probes know is
// read-only: that is its mode, not a failure, and must not eject it (it
// still serves reads, and holds the upload sessions it opened).
func frozenRefusal(n *upstream.Node, kind string, status int) bool {
	return kind == "write" && status == http.StatusServiceUnavailable && n.State() == upstream.ReadOnly
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		r.Body.Close()
	}
}

func refusalFor(err error) *refusal {
	var rf *refusal
	if errors.As(err, &rf) {
		return rf
	}
	switch {
	case errors.Is(err, upstream.ErrNoneWritable):
		return &refusal{status: http.StatusServiceUnavailable, code: "UNAVAILABLE", retryAfter: "10", close: true,
			msg: "nexmux: Nexus accepts no writes right now (read-only or maintenance); reads still work; retry later"}
	default:
		return &refusal{status: http.StatusServiceUnavailable, code: "UNAVAILABLE", retryAfter: "5", close: true,
			msg: "nexmux: no Nexus node is reachable right now; retry later"}
	}
}

// uploadNode finds the node that holds an upload session: the tagged node,
// else whichever node says it knows the session.
func (f failover) uploadNode(r *http.Request, tag, uuid string) ([]*upstream.Node, error) {
	set := f.up.set
	n, err := set.Untag(tag, uuid)
	var serves, ejected bool
	var tagged *upstream.Node
	if err == nil {
		serves, ejected = set.Tagged(n)
		// Down here, but the tag is proof that a replica handed this node
		// out: that one may have seen it back before this one's probes
		// do. So it is asked too (a refused dial costs little).
		tagged = n
	}
	switch {
	case serves:
		if ejected {
			// Still failing, maybe: where Nexus shares sessions another
			// node that knows this one takes the chunk. Else it stays on
			// its node, which may well hold it alone.
			if m := f.askOthers(r, n); m != nil {
				set.Affinity("asked")
				return []*upstream.Node{m}, nil
			}
		}
		set.Affinity("hit")
		return []*upstream.Node{n}, nil
	case errors.Is(err, upstream.ErrTagTampered):
		set.Affinity("tampered")
	case errors.Is(err, upstream.ErrTagAbsent):
		set.Affinity("absent")
	}
	if lone := set.Lone(); lone != nil {
		// One node: it holds every session. Not while a node a reload
		// removed drains: its sessions may still finish there.
		return []*upstream.Node{lone}, nil
	}
	n, err = f.findUpload(r, tagged)
	if err != nil {
		return nil, err
	}
	return []*upstream.Node{n}, nil
}

// askOthers asks the nodes other than n that would take the upload's
// writes whether one knows the session; nil if none says so. Only those:
// a read-only node refuses a chunk its own node may take, and a drained
// one is being emptied. Writes even for a status GET: the node that
// answers it gets the upload's tag, so its next chunk.
func (f failover) askOthers(r *http.Request, n *upstream.Node) *upstream.Node {
	set := f.up.set
	var others []*upstream.Node
	for _, m := range set.Nodes() {
		if m != n && set.Takes(m, true) {
			others = append(others, m)
		}
	}
	m, _, _ := f.ask(r, others)
	return m
}

// findUpload asks the nodes that answer which one knows the upload session,
// and tagged (the node the upload's valid tag names, nil if none) even when
// this replica has it down.
func (f failover) findUpload(r *http.Request, tagged *upstream.Node) (*upstream.Node, error) {
	set := f.up.set
	askable := set.Askable()
	allDown := len(askable) == 0
	if tagged != nil && !slices.Contains(askable, tagged) {
		askable = append(askable, tagged)
	}
	n, unasked, denied := f.ask(r, askable)
	if n != nil {
		set.Affinity("asked")
		return n, nil
	}
	if allDown {
		// Every node is down: none answered, so nothing says the
		// session is gone; the answer is the one every request gets.
		return nil, upstream.ErrAllDown
	}
	if denied != nil {
		// Nexus refused the client's credentials: that says nothing of
		// the session. The request goes to that node, whose own 401
		// challenge (or 403) has the client log in again, as with a
		// valid tag; a 404 would have it start the layer over.
		return denied, nil
	}
	if unasked {
		// A node nexmux could not dial, or too busy to be asked, may
		// hold the session: a 404 would make the client start over.
		return nil, &refusal{status: http.StatusServiceUnavailable, code: "UNAVAILABLE", retryAfter: "1", close: true,
			msg: "nexmux: could not ask every Nexus node which one holds this upload (busy, or nexmux short of connections); retry shortly"}
	}
	set.Affinity("unknown")
	return nil, uploadUnknown()
}

// uploadGone answers a follow-up whose node turned out unreachable:
// 404 BLOB_UPLOAD_UNKNOWN while another node answers, else (every node
// down) the 503 UNAVAILABLE every request gets.
func (f failover) uploadGone() error {
	if len(f.up.set.Askable()) == 0 {
		return refusalFor(upstream.ErrAllDown)
	}
	f.up.set.Affinity("unknown")
	return uploadUnknown()
}

// uploadUnknown answers a follow-up whose session no node holds: clients
// start that layer's upload again.
func uploadUnknown() *refusal {
	return &refusal{status: http.StatusNotFound, code: "BLOB_UPLOAD_UNKNOWN", close: true,
		msg: "nexmux: no Nexus node knows this upload session (its node is gone); start the upload again"}
}

// ask sends a bodiless GET of the upload session to every node at once and
// returns one that knows it (2xx), one that takes writes if any does: with
// shared sessions a read-only node knows them too, and would refuse the
// chunk (and get the upload's tag); so only such a node's answer ends the
// others' wait. unasked reports a node not asked, for a dial that failed
// on this host (upstream.LocalDialFailure) or no free connection slot
// within the wait, or one up that had not answered when the wait ended.
// denied is a node that refused the client's credentials (401 or 403), one
// that takes writes if any did, when no node that answered took them.
func (f failover) ask(r *http.Request, nodes []*upstream.Node) (found *upstream.Node, unasked bool, denied *upstream.Node) {
	if len(nodes) == 0 {
		return nil, false, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), askTimeout)
	defer cancel()
	// Buffered: a question still out when the wait ends sends its
	// answer to nobody.
	knows := make(chan *upstream.Node, len(nodes))
	refusing := make(chan *upstream.Node, len(nodes))
	// judged: a node took the credentials and answered (404: it does
	// not know the session); a 401 elsewhere is then that node's own.
	var notAsked, judged atomic.Bool
	answered := make([]atomic.Bool, len(nodes)) // or not asked at all
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer answered[i].Store(true)
			// The question is a request on n: it takes one of n's
			// --upstream-max-conns slots (waiting at most askTimeout).
			queue := poolQueueTimeout
			sl, ok := f.up.acquire(ctx, n.Host, f.client(ctx), &queue)
			if !ok {
				// Too busy to be asked (not cancelled: another node
				// knows, or the client left): it may hold the session.
				// Not one found down, whose slots are held by questions
				// it never answers: its upload is lost, as below.
				if !errors.Is(ctx.Err(), context.Canceled) && n.State() != upstream.Down {
					notAsked.Store(true)
				}
				return
			}
			if ctx.Err() != nil {
				sl.release() // not sent: nobody waits for the answer
				return
			}
			// Sent, the question holds its slot until n answers, though
			// nobody waits any more (the client left, another node knew):
			// Nexus works on it all the same (Jetty notices a closed
			// connection only when it writes), so giving the slot back
			// then would let questions pile on n beyond the bound.
			// Its own trace only: the client's (ReverseProxy's) would
			// write a node's 1xx to the question to the client.
			fr := newFreshness()
			q, err := http.NewRequestWithContext(fr.context(hideTrace(context.WithoutCancel(ctx)), nil), http.MethodGet, upstream.Origin(n.Scheme, n.Host)+r.URL.EscapedPath(), nil)
			if err != nil {
				sl.release()
				return
			}
			// In flight on n, as a resume is: nexmux_upstream_in_flight,
			// /upstreams and a removed node's drain count it.
			end := n.Begin()
			defer func() { end(); sl.release() }()
			q.Host = r.Host
			for _, h := range []string{"Authorization", "X-Forwarded-Proto", "X-Forwarded-For", "User-Agent"} {
				if v := r.Header.Values(h); v != nil {
					q.Header[h] = v
				}
			}
			resp, err := fr.roundTrip(f.next, q)
			if err != nil {
				if upstream.LocalDialFailure(err) {
					notAsked.Store(true)
				} else if upstream.ConnectFailure(err) {
					// Real traffic: a refused connection marks the node
					// down at once, as a request's does.
					f.up.set.ReportConnectFailure(n, err)
				}
				return
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			switch {
			case resp.StatusCode/100 == 2:
				knows <- n
				if f.up.set.Takes(n, true) {
					cancel()
				}
			case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
				refusing <- n
			default:
				judged.Store(true)
			}
		}()
	}
	// Every answer, or the end of the wait (a node that knows and takes
	// writes ends it early); questions still out run on alone.
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-ctx.Done():
		for i, n := range nodes {
			// A node up that has not answered yet may hold the session
			// (busy, as one too busy to be asked): not a 404 that starts
			// the layer over. One found down (a tagged node asked all
			// the same) is frozen or gone: its upload is lost anyway.
			if !answered[i].Load() && n.State() != upstream.Down {
				notAsked.Store(true)
			}
		}
	}
	cancel()
	for more := true; more; {
		select {
		case n := <-knows:
			if found == nil || f.up.set.Takes(n, true) {
				found = n
			}
		case n := <-refusing:
			if denied == nil || f.up.set.Takes(n, true) {
				denied = n
			}
		default: // not closed: a question still out may answer later
			more = false
		}
	}
	if found != nil {
		return found, false, nil
	}
	if judged.Load() {
		denied = nil
	}
	return nil, notAsked.Load(), denied
}

// attempt is what one try on a node holds until its answer is finished
// with: the node's in-flight count, its connection slot and, when the
// request could move on, its cancellable context.
type attempt struct {
	n      *upstream.Node
	slot   slot
	cancel context.CancelCauseFunc
}

// done ends the attempt; once.
func (a attempt) done() {
	a.n.End()
	a.slot.release()
	if a.cancel != nil {
		a.cancel(nil)
	}
}

// doneBody ends its attempt once when the response body is finished with:
// its Nexus connection and slot at the body's end, before the client has
// taken the last bytes (a client that stops reading holds no Nexus
// connection), the rest at Close.
//
// It also drops the answer's trailers, which the Transport fills in as the
// body ends: the Registry API has none, Jetty sends none, and ReverseProxy
// would pass on any a node sent, to HTTP/1 clients without a check (fields
// no trailer may carry, a Location naming a node, which no rewrite sees).
type doneBody struct {
	io.ReadCloser
	a        attempt
	resp     *http.Response // whose Trailer is dropped at the body's end
	released atomic.Bool
	closed   atomic.Bool
}

func (d *doneBody) Read(b []byte) (int, error) {
	n, err := d.ReadCloser.Read(b)
	if err == io.EOF {
		if d.resp != nil {
			// Read by ReverseProxy on this goroutine once the copy ends.
			d.resp.Trailer = nil
		}
		d.release()
	}
	return n, err
}

func (d *doneBody) release() {
	if d.released.CompareAndSwap(false, true) {
		d.a.n.End()
		d.a.slot.release()
	}
}

func (d *doneBody) Close() error {
	err := d.ReadCloser.Close()
	if d.closed.CompareAndSwap(false, true) {
		d.release()
		if d.a.cancel != nil {
			d.a.cancel(nil)
		}
	}
	return err
}

// tagUpload adds the affinity tag of the node that answered to an upload
// Location, so the client's follow-ups come back to that node. Only a
// Location on nexmux's own upload path is tagged (relative, or on the
// request's own host, as rewriteHeaders leaves Nexus's): never a redirect
// elsewhere, which must not learn the tag nor get its query changed.
// prev is the tag the request came with (a follow-up's), kept while valid.
func (p *Proxy) tagUpload(resp *http.Response, prev string) {
	loc := resp.Header.Get("Location")
	if !strings.Contains(loc, "/blobs/uploads/") {
		return
	}
	u, err := url.Parse(loc)
	if err != nil || u.Opaque != "" || u.User != nil {
		return
	}
	if u.Host != "" || u.Scheme != "" {
		if (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, publicAuthority(resp.Request.Host)) {
			return
		}
	}
	path := u.EscapedPath()
	i := strings.LastIndex(path, "/blobs/uploads/")
	if !strings.HasPrefix(path, "/v2/") || i < 0 {
		return
	}
	uuid := path[i+len("/blobs/uploads/"):]
	if uuid == "" || strings.Contains(uuid, "/") {
		return
	}
	n := p.up.set.ByHost(resp.Request.URL.Host)
	if n == nil {
		return
	}
	resp.Header.Set("Location", upstream.AddTag(loc, p.up.set.Retag(n, uuid, prev)))
}
