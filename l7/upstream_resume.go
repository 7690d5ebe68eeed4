package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// resumeBody continues a blob download from another node when the node
// serving it breaks mid-stream: it asks for the rest with Range shifted
// onto the client's own range and accepts only a 206 whose Content-Range
// starts where the break was and has the same total length, so the client
// gets one intact response.
type resumeBody struct {
	f  failover
	fr *freshness    // the request's, whose trace r's context carries
	r  *http.Request // the request as sent (any node's Host is replaced)
	// client is the client's request context: the request sent outlives
	// the client (it holds its slot until Nexus answers), a resume must not.
	client context.Context
	key    string // rendezvous key
	node   *upstream.Node
	cur    io.ReadCloser
	start  int64 // offset of the response's first byte in the blob
	end    int64 // offset of its last byte
	total  int64
	got    int64 // bytes passed on
	tries  int
	broke  map[*upstream.Node]bool // nodes that failed this response
	// end1 gives back the current node's in-flight count and place: a
	// resume calls it as it leaves the node (the first node's is its
	// doneBody's release, idempotent), Close for the last.
	end1 func()
	// cancel ends the current node's request, which stopWatch stops
	// watching: a node found down mid-body (frozen, partitioned: no FIN,
	// no RST) would otherwise hold the client until TCP keepalive gives up.
	// Guarded by mu: the stall timer and the client's end use it too.
	mu        sync.Mutex
	cancel    context.CancelCauseFunc
	stopWatch func() bool
	// stall ends the current node's request when one read from it waits
	// past upstreamBodyReadTimeout (a node up but sending nothing);
	// waitingSince (under mu) is when the read under way began, zero with
	// none; stalled says the timer ended a request.
	stall        *time.Timer
	waitingSince time.Time
	stalled      atomic.Bool
	// stopClient stops ending the request with an HTTP/2 client's stream.
	stopClient func() bool
	// left: the HTTP/2 client reset its stream (guarded by mu). A resume's
	// request, sent before and watched after, is ended as watch takes it.
	left bool
	// suspects broke this response (its body, or a resume's request),
	// held against them only once a node serves it whole: a blob every
	// node breaks on is the blob's (a proxy repository's remote, a blob
	// store file cut short), and counted it would eject them.
	suspects []brokeOn
	// whole: the end was read, and reported (Read may see EOF again).
	whole bool
	// began is when the current response's first read began, waited the
	// time its reads have waited on the node since (paced).
	began  time.Time
	waited time.Duration
	// skip is how many bytes of the current response come before the
	// break: a whole-blob 200 taken for a resume (resumeOn) is read from
	// its start, and they are dropped.
	skip int64
	// passed are nodes whose whole-blob 200 a resume passed over for a
	// node after them: asked again, once, when no other is left.
	passed map[*upstream.Node]bool
}

// pacedBreakMin is how long a response must have been read before a break
// can count as paced: it bounds how often a node is asked again.
const pacedBreakMin = time.Second

// brokeOn is a node that broke a response, and how.
type brokeOn struct {
	n   *upstream.Node
	why string
}

// errBodyStalled ends a node's request whose body sent nothing for
// upstreamBodyReadTimeout; errClientLeft one whose HTTP/2 client reset its
// stream.
var (
	errBodyStalled = errors.New("Nexus sent nothing of the body within the read timeout")
	errClientLeft  = errors.New("the client reset its stream")
)

// resumable wraps resp's body when it is a whole or single-range blob
// answer whose extent is known, and reports whether it did.
func (f failover) resumable(r *http.Request, fr *freshness, client context.Context, n *upstream.Node, key string, resp *http.Response, cancel context.CancelCauseFunc, release func()) bool {
	// Its resumes use fr after the request's first answer, and may give
	// one up while the Transport still reads it: never reused.
	fr.dirty.Store(true)
	b := &resumeBody{f: f, fr: fr, r: r, client: client, key: key, node: n, cur: resp.Body, end1: release}
	switch {
	// A 200 is the whole blob whatever Range asked (several ranges, an
	// If-Range of another validator): it resumes like an unranged one.
	case resp.StatusCode == http.StatusOK && resp.ContentLength > 0:
		b.start, b.end, b.total = 0, resp.ContentLength-1, resp.ContentLength
	case resp.StatusCode == http.StatusPartialContent:
		s, e, t, ok := partOf(resp)
		if !ok {
			return false
		}
		b.start, b.end, b.total = s, e, t
	default:
		return false
	}
	b.watch(n, cancel)
	// An HTTP/2 client's reset is final (over HTTP/1 a half-close ends
	// the context too, and that client still reads): end the request, as
	// Nexus may send nothing that would fail a write for long.
	if r.ProtoMajor > 1 {
		b.stopClient = context.AfterFunc(client, b.clientLeft)
	}
	resp.Body = b
	return true
}

// clientLeft is the HTTP/2 client's reset: it ends the current request,
// and any a resume under way sends (watch).
func (b *resumeBody) clientLeft() {
	b.mu.Lock()
	b.left = true
	if b.cancel != nil {
		b.cancel(errClientLeft)
	}
	b.mu.Unlock()
}

// stallFired is the stall timer's: only a read still waiting, and for the
// whole timeout, has stalled. Decided under mu, so a late run of the timer
// never ends the request of a read that began since, or of a resume.
func (b *resumeBody) stallFired() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waitingSince.IsZero() || time.Since(b.waitingSince) < time.Duration(upstreamBodyReadTimeout.Load()) || b.cancel == nil {
		return
	}
	b.stalled.Store(true)
	b.cancel(errBodyStalled)
}

// watch cuts the current body (so the download resumes elsewhere) when n
// is found down, if another node serves reads: with none, the answer may
// still come, as a request waiting for headers on its last node waits.
func (b *resumeBody) watch(n *upstream.Node, cancel context.CancelCauseFunc) {
	b.mu.Lock()
	b.cancel = cancel
	if b.left && cancel != nil {
		cancel(errClientLeft)
	}
	b.mu.Unlock()
	b.stopWatch = nil
	alive := n.Alive()
	if cancel == nil || alive.Err() != nil {
		return // already down: fail open, nothing to watch
	}
	set := b.f.up.set
	b.stopWatch = context.AfterFunc(alive, func() {
		// An ejected node counts: resume falls back on it.
		if set.OtherServes(n, false) {
			cancel(errNodeDown)
		}
	})
}

// unwatch ends the current node's watch and request.
func (b *resumeBody) unwatch() {
	if b.stopWatch != nil {
		b.stopWatch()
		b.stopWatch = nil
	}
	b.mu.Lock()
	if b.cancel != nil {
		b.cancel(nil)
		b.cancel = nil
	}
	b.mu.Unlock()
}

// partOf is a 206's one range: its Content-Range, whose length its
// Content-Length (when given) must agree with.
func partOf(resp *http.Response) (s, e, t int64, ok bool) {
	s, e, t, ok = contentRange(resp.Header.Get("Content-Range"))
	if !ok || resp.ContentLength >= 0 && resp.ContentLength != e-s+1 {
		return 0, 0, 0, false
	}
	return s, e, t, true
}

// contentRange parses "bytes S-E/T".
func contentRange(v string) (s, e, t int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	se, ts, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	ss, es, found := strings.Cut(se, "-")
	if !found {
		return 0, 0, 0, false
	}
	// ParseUint takes digits only (ParseInt would take a sign); 63 bits
	// keep each in int64.
	su, err1 := strconv.ParseUint(ss, 10, 63)
	eu, err2 := strconv.ParseUint(es, 10, 63)
	tu, err3 := strconv.ParseUint(ts, 10, 63)
	s, e, t = int64(su), int64(eu), int64(tu)
	if err1 != nil || err2 != nil || err3 != nil || e < s || t <= e {
		return 0, 0, 0, false
	}
	return s, e, t, true
}

func (b *resumeBody) Read(p []byte) (int, error) {
	n, err := b.read(p)
	if err == io.EOF && b.start+b.got > b.end && !b.whole {
		// Whole: the breaks were the nodes' own, and the node that served
		// the end served (only now: its headers did not clear the breaks
		// of earlier pulls).
		b.whole = true
		for _, s := range b.suspects {
			b.f.up.set.ReportResult(s.n, false, s.why)
		}
		b.suspects = nil
		b.f.up.set.ReportResult(b.node, true, "")
	}
	return n, err
}

func (b *resumeBody) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		// Never past the extent: a node's body that runs on (chunked, or
		// a Content-Length beyond its range) is not the blob's.
		rem := b.end + 1 - (b.start + b.got)
		if rem <= 0 {
			return 0, io.EOF
		}
		var n int
		var err error
		if b.skip > 0 {
			// Each read under the stall timer: a long skip that moves
			// is no stall.
			var k int
			k, err = b.timedRead(p[:min(int64(len(p)), b.skip)])
			b.skip -= int64(k)
			if err == nil {
				continue
			}
		} else {
			if int64(len(p)) > rem {
				p = p[:rem]
			}
			n, err = b.timedRead(p)
			b.got += int64(n)
			if err == nil || n > 0 && err == io.EOF && b.start+b.got > b.end {
				return n, err
			}
			if err == io.EOF && b.start+b.got > b.end {
				return n, io.EOF
			}
		}
		if b.client.Err() != nil || b.f.cutting() {
			return n, err
		}
		// Broken (or short) before the end: continue elsewhere. A stall
		// is not held against the node: a proxy repository's remote, one
		// blob, may be what stalled. Nor is a paced break, which the same
		// node may resume.
		paced := false
		if !b.stalled.Swap(false) {
			if paced = b.paced(); !paced {
				b.suspects = append(b.suspects, brokeOn{b.node, "blob body broke: " + errString(err)})
			}
		}
		if rerr := b.resume(paced); rerr != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// timedRead reads from the current node under the stall timer: each read
// must bring something within upstreamBodyReadTimeout (nginx's
// proxy_read_timeout, between two reads); the time the client takes to be
// written to does not count.
func (b *resumeBody) timedRead(p []byte) (int, error) {
	t0 := time.Now()
	if b.began.IsZero() {
		b.began = t0
	}
	b.mu.Lock()
	b.waitingSince = t0
	b.mu.Unlock()
	d := time.Duration(upstreamBodyReadTimeout.Load())
	if b.stall == nil {
		b.stall = time.AfterFunc(d, b.stallFired)
	} else {
		b.stall.Reset(d)
	}
	n, err := b.cur.Read(p)
	b.waited += time.Since(t0)
	b.mu.Lock()
	b.waitingSince = time.Time{}
	b.mu.Unlock()
	b.stall.Stop()
	return n, err
}

// paced says the current response broke after it had run at the client's
// pace: for at least pacedBreakMin, with nexmux waiting on the node for
// under a quarter of it, as it spent the rest writing to the client. The
// node's writes then wait on full buffers, and Jetty ends a write that
// makes no progress for its idle timeout: the break is no fault of the
// node's, and resuming there makes progress (bytes passed on) each time.
func (b *resumeBody) paced() bool {
	if b.got == 0 || b.began.IsZero() {
		return false
	}
	d := time.Since(b.began)
	return d >= pacedBreakMin && 4*b.waited < d
}

func errString(err error) string {
	if err == io.EOF {
		return "short body"
	}
	return err.Error()
}

var errNoResume = errors.New("no node could resume the download")

// resume continues the download from the next node that can, or first
// from the node that broke when the break was paced.
func (b *resumeBody) resume(paced bool) error {
	set := b.f.up.set
	from := b.start + b.got
	queue := poolQueueTimeout
	// The broken response is over: its node's place and in-flight count
	// go back now, not once another node has answered the resume.
	b.leave()
	if b.broke == nil {
		b.broke = map[*upstream.Node]bool{}
	}
	if paced {
		if err := b.client.Err(); err != nil {
			return err
		}
		cands, err := set.Pick(upstream.ReadDigest, b.key)
		if err != nil {
			return err
		}
		if slices.Contains(cands, b.node) {
			moveOn := slices.ContainsFunc(cands, func(c *upstream.Node) bool { return c != b.node && !b.broke[c] })
			if b.resumeOn(b.node, from, moveOn, moveOn, &queue) {
				return nil
			}
		}
	}
	for b.tries < 2*len(set.Nodes()) {
		if err := b.client.Err(); err != nil {
			return err // the client left: no further node for nobody
		}
		cands, err := set.Pick(upstream.ReadDigest, b.key)
		if err != nil {
			return err
		}
		b.broke[b.node] = true
		// Pick's nodes, then those passive ejection keeps out but whose
		// probes pass: the ejection steers new requests elsewhere, and
		// with no other node left it would cut a download a healthy
		// node can finish (Pick falls back on them the same way).
		picked := len(cands)
		for _, c := range set.Ejected(upstream.ReadDigest, b.key) {
			if !slices.Contains(cands, c) {
				cands = append(cands[:len(cands):len(cands)], c)
			}
		}
		var n *upstream.Node
		// moveOn: another node could resume after n, so n found down
		// gives the resume up at once; room: one of Pick's, so n
		// without room for the client is passed over too (an ejected
		// node is for failures, not for room, as in RoundTrip).
		moveOn, room := false, false
		for i, c := range cands {
			if !b.broke[c] {
				if n != nil {
					moveOn, room = true, i < picked
					break
				}
				n = c
			}
		}
		if n == nil {
			// Last, a node that answered the whole blob (Range ignored),
			// now taken from its start.
			for _, c := range cands {
				if b.passed[c] {
					n = c
					delete(b.passed, c)
					break
				}
			}
		}
		if n == nil {
			return errNoResume
		}
		b.tries++
		if b.resumeOn(n, from, moveOn, room, &queue) {
			return nil
		}
	}
	return errNoResume
}

// resumeOn asks n for the rest, from, and makes its answer the current
// one if it is the rest; else n becomes the node that broke. moveOn says
// another node could take the resume after n, room that it may also take
// it when n has no place for the client.
func (b *resumeBody) resumeOn(n *upstream.Node, from int64, moveOn, room bool, queue *time.Duration) bool {
	// Only a paced break is resumed on the node that broke (resume).
	paced := n == b.node
	if paced {
		// The broken response's place on n may be all the client may hold
		// there: the resume would wait for its own place, then give up.
		b.leave()
	}
	// A resume is one more request on n: it takes one of n's
	// --upstream-max-conns slots like any other.
	sl, ok := b.f.up.acquireOr(b.client, n.Host, b.f.client(b.client), queue, room)
	if !ok {
		b.node = n
		return false
	}
	// Its own context: the broken request's may be cancelled (its
	// node found down), and is ended by Close or the next resume.
	qctx, qcancel := context.WithCancelCause(context.WithoutCancel(b.r.Context()))
	q := b.r.Clone(qctx)
	q.URL.Scheme, q.URL.Host = n.Scheme, n.Host
	q.Body, q.GetBody, q.ContentLength = nil, nil, 0
	q.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, b.end))
	q.Header.Del("If-Range")
	begin := n.Begin()
	end := func() { begin(); sl.release() }
	// While its headers are awaited, n found down (frozen: it never
	// answers) gives the resume up for the next node, as a first
	// request's wait does; else it waits the whole header timeout.
	stopWait := func() bool { return false }
	if alive := n.Alive(); moveOn && alive.Err() == nil {
		stopWait = context.AfterFunc(alive, func() { qcancel(errNodeDown) })
	}
	resp, err := b.fr.roundTrip(b.f.next, q)
	stopWait()
	if err != nil {
		gaveUp := context.Cause(qctx) != nil // found down meanwhile
		qcancel(nil)
		end()
		// Real traffic's refused connection marks the node down at once,
		// as a first request's does: else it keeps taking requests until
		// a probe asks it.
		if upstream.ConnectFailure(err) && !gaveUp {
			b.f.up.set.ReportConnectFailure(n, err)
		}
		// nexmux's own dial failure (598c89c) is not the node's.
		if !upstream.LocalDialFailure(err) {
			b.suspects = append(b.suspects, brokeOn{n, err.Error()})
		}
		b.node = n
		return false
	}
	// An answer, as a first request's: a node that times out its probes
	// while it answers resumes is busy, not down.
	b.f.up.set.CountAnswer(n, resp.StatusCode)
	s, e, t, ok := partOf(resp)
	// A node that ignores Range answers the whole blob: taken from its
	// start, the bytes before the break dropped, when no node is left
	// to answer the 206 (else passed over, and asked again last). Else
	// the break of the node before stays held against none, no node
	// having served the blob whole, and every pull that starts on a
	// node cutting blobs is cut.
	whole := resp.StatusCode == http.StatusOK && resp.ContentLength == b.total
	if whole && moveOn {
		if b.passed == nil {
			b.passed = map[*upstream.Node]bool{}
		}
		b.passed[n], whole = true, false
	}
	if !whole && (resp.StatusCode != http.StatusPartialContent || !ok || s != from || e != b.end || t != b.total) {
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			// A failed resume, counted as a body's break is: once
			// another node serves the blob whole.
			b.suspects = append(b.suspects, brokeOn{n, "blob resume answered " + resp.Status})
		}
		resp.Body.Close()
		qcancel(nil)
		end()
		b.node = n
		return false
	}
	b.leave()
	b.cur, b.node, b.end1 = resp.Body, n, end
	b.watch(n, qcancel)
	// What follows is counted from the new response's first byte.
	b.start, b.got, b.skip = from, 0, 0
	if whole {
		b.skip = from
	}
	b.began, b.waited = time.Time{}, 0
	b.f.up.set.Resumed(paced)
	return true
}

// leave ends the current node's response, and gives back its place
// (once: a resume's end releases its slot each time it is called).
func (b *resumeBody) leave() error {
	err := b.cur.Close()
	b.unwatch()
	if b.end1 != nil {
		b.end1()
		b.end1 = nil
	}
	return err
}

func (b *resumeBody) Close() error {
	err := b.leave()
	if b.stall != nil {
		b.stall.Stop()
	}
	if b.stopClient != nil {
		b.stopClient()
	}
	return err
}
