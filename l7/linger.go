package l7

import (
	"io"
	"net/http"
	"time"
)

// The lingering close of an HTTP/1 request body that nexmux refused
// before reading it to its end (nginx's lingering_close): the answer goes
// out first, then what the client still sends of the body is read and
// thrown away, so a client that writes its whole body before it reads
// meets the close with nothing left unread, not a reset that may take the
// answer back from its kernel.

// lingerMaxBytes is what net/http itself reads of a body left unread
// (its maxPostHandlerReadBytes).
const lingerMaxBytes = 256 << 10

// answerFirst readies w's answer to go out before the request's unread
// body. net/http would read up to 256 KiB of it before sending the answer,
// so a client that stalls would wait for its read deadline; in full duplex
// it does not. Connection: close, since a rest left unread must not be
// read as the next request.
func answerFirst(w http.ResponseWriter) {
	endConnection(w)
	_ = http.NewResponseController(w).EnableFullDuplex()
}

// linger sends cw's answer, then reads and throws away up to
// lingerMaxBytes of body within --body-timeout. net/http's own read after
// the handler (body.Close) is no substitute: it skips the body of a
// request that said Connection: close (HTTP/1.0's default). It still
// comes after this one, under the same deadline, and a body it finds
// going on past 256 KiB more gets net/http's FIN and half a second
// before the close.
func (p *Proxy) linger(cw *batchingWriter, body io.Reader, rd readDeadliner) {
	cw.Flush()
	var end time.Time
	if p.bodyTO > 0 {
		end = time.Now().Add(p.bodyTO)
	}
	_ = rd.SetReadDeadline(end)
	_, _ = io.CopyN(io.Discard, body, lingerMaxBytes)
}
