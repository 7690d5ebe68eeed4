package l7

import (
	"io"
	"net/http"
	"os"
	"time"
)

// The lingering close of an HTTP/1 request body that nexmux refused
// before reading it to its end (nginx's lingering_close): the answer goes
// out first, then what the client still sends of the body is read and
// thrown away, so a client that writes its whole body before it reads
// meets the close with nothing left unread, not a reset that may take the
// answer back from its kernel.
const (
	// lingerMaxBytes bounds the rest of a body read after a refusal. A
	// client that writes its whole body before it reads (Apache
	// HttpClient, under Jib and Maven or Gradle plugins) gets the answer
	// only once that write is done: closed under a body it is still
	// sending, its next write fails with a reset and it never reads the
	// answer. net/http's 256 KiB (maxPostHandlerReadBytes) left such a
	// client the error for any PATCH of a layer beyond the socket buffers;
	// 64 MiB covers the application and dependency layers builds push,
	// and costs a refusal at most a few tens of milliseconds of one
	// core's TLS decryption. The time bounds below still come first.
	lingerMaxBytes = 64 << 20
	// lingerTime and lingerIdle are nginx's lingering_time and
	// lingering_timeout: the linger in all, and its wait for each read.
	lingerTime = 30 * time.Second
	lingerIdle = 5 * time.Second
)

// answerFirst readies w's answer to go out before the request's unread
// body. net/http would read up to 256 KiB of it before sending the answer,
// so a client that stalls would wait for its read deadline; in full duplex
// it does not. Connection: close, since a rest left unread must not be
// read as the next request.
func answerFirst(w http.ResponseWriter) {
	endConnection(w)
	_ = http.NewResponseController(w).EnableFullDuplex()
}

// AnswerFirst serves h, which reads no request body, so that an HTTP/1
// request's body never holds its answer (answerFirst): the answer goes out
// at once with Connection: close, and net/http reads up to 256 KiB of the
// body after it under the server's read deadline (none of a sized body
// whose request said Connection: close; Proxy.linger's own read is for
// answers nexmux knows whole before it returns).
func AnswerFirst(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			answerFirst(w)
		}
		h.ServeHTTP(w, r)
	})
}

// linger sends cw's answer, then reads and throws away up to
// lingerMaxBytes of body: at most p.lingerTime in all and p.lingerIdle a
// read, each within --body-timeout. net/http's own read after the handler
// (body.Close) is no substitute: it skips the body of a request that said
// Connection: close (HTTP/1.0's default), and it has one deadline, without
// end when --body-timeout is 0. It still comes after this one, under the
// last deadline set here, and a body it finds going on past 256 KiB more
// gets net/http's FIN and half a second before the close.
func (p *Proxy) linger(cw *batchingWriter, body io.Reader, rd readDeadliner) {
	cw.Flush()
	total, idle := p.lingerTime, p.lingerIdle
	if p.bodyTO > 0 {
		total, idle = min(total, p.bodyTO), min(idle, p.bodyTO)
	}
	lr := &lingerReader{r: body, rd: rd, idle: idle, end: time.Now().Add(total), all: &p.lingers}
	if !p.lingers.add(lr) {
		// net/http's own read after the handler, under this deadline too.
		_ = rd.SetReadDeadline(time.Now())
		return
	}
	defer p.lingers.remove(lr)
	_, _ = io.CopyN(io.Discard, lr, lingerMaxBytes)
}

// lingerSet is the lingers going on, which a drain ends at once (nginx ends
// its lingering closes as a worker exits): a refused client trickling its
// body has nothing in flight to wait for, and would hold the drain, so a
// replica's restart, up to --drain-timeout.
type lingerSet struct{ cutSet[*lingerReader] }

// drain ends every linger's wait now, and each later one before it reads.
func (s *lingerSet) drain() {
	for l := range s.cutAll() {
		_ = l.rd.SetReadDeadline(time.Now())
	}
}

// lingerReader reads r, each read under a deadline of idle from its start
// and none past end, and none once a drain began.
type lingerReader struct {
	r    io.Reader
	rd   readDeadliner
	idle time.Duration
	end  time.Time
	all  *lingerSet
}

func (l *lingerReader) Read(b []byte) (int, error) {
	now := time.Now()
	if !now.Before(l.end) {
		return 0, os.ErrDeadlineExceeded
	}
	dl := now.Add(l.idle)
	if l.end.Before(dl) {
		dl = l.end
	}
	// Not once a drain began, and never over its past deadline.
	if !l.all.unlessCut(func() { _ = l.rd.SetReadDeadline(dl) }) {
		return 0, os.ErrDeadlineExceeded
	}
	return l.r.Read(b)
}
