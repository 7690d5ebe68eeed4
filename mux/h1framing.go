package mux

import (
	"bytes"
	"sync/atomic"
)

// Ambiguous request framing. net/http takes a request with both
// Content-Length and Transfer-Encoding: chunked by its chunks (dropping
// Content-Length), and ignores Transfer-Encoding on HTTP/1.0, but keeps the
// connection open after either; a front end that framed the body the other
// way (a TLS-ending balancer in front of a port route) would then have
// nexmux serve bytes it took for body as a request of its own. RFC 9112
// (6.1, 6.3) requires closing the connection after such a request. net/http
// has deleted both headers before a handler runs, so h1Conn follows the
// request stream itself: every byte net/http reads passes h1Conn.Read, in
// order, and framing finds each request's header block and skips its body,
// just far enough to see those headers. Anything it cannot follow is taken
// as ambiguous too: a close too many is harmless, one too few is not.

// framingLineKeep is how much of a header line framing keeps: the longest
// name it looks for ("transfer-encoding:") and a Content-Length value.
const framingLineKeep = 48

// maxChunkLine is net/http's limit on a chunk-size line (internal.maxLineLength).
const maxChunkLine = 4096

// Framing states: where in the request stream the next byte is.
const (
	frRequestStart uint8 = iota // before a request line (CR and LF skipped)
	frHeaderLine                // in the request line or a header line
	frBody                      // in a Content-Length body
	frChunkLine                 // in a chunk-size line
	frChunkData                 // in a chunk's data
	frChunkCR                   // after a chunk's data: CR
	frChunkLF                   // after a chunk's data: LF
	frTrailer                   // in the trailer section
	frDone                      // ambiguous: nothing more to follow
)

// Header lines framing tells apart (obs-fold continues the previous one).
const (
	hdrOther uint8 = iota
	hdrContentLength
	hdrTransferEncoding
)

// framing follows one HTTP/1 connection's request stream. scan runs only
// where net/http reads (one read at a time, its background read included);
// ambiguous is read by the handler's goroutine.
type framing struct {
	ambiguous atomic.Bool
	state     uint8
	first     bool  // the current line is the request line
	http10    bool  // the request line's version is HTTP/1.0
	hasCL     bool  // a Content-Length line
	hasTE     bool  // a Transfer-Encoding line
	lastHdr   uint8 // the previous header line's kind
	cl        int64 // Content-Length, -1 if it did not parse
	remain    int64 // body or chunk bytes still to skip
	lineLen   int   // the current line's length so far
	prev      byte  // the current line's last byte so far
	line      [framingLineKeep]byte
	// tail is the request line's last bytes, for its version.
	tail [len(" HTTP/1.0\r")]byte
}

func (f *framing) fail() { f.state = frDone; f.ambiguous.Store(true) }

// scan follows b, the next bytes net/http read.
func (f *framing) scan(b []byte) {
	for len(b) > 0 && f.state != frDone {
		switch f.state {
		case frBody, frChunkData:
			n := min(int64(len(b)), f.remain)
			f.remain -= n
			b = b[n:]
			if f.remain == 0 {
				if f.state == frBody {
					f.state = frRequestStart
				} else {
					f.state = frChunkCR
				}
			}
			continue
		case frRequestStart:
			if b[0] == '\r' || b[0] == '\n' {
				b = b[1:]
				continue
			}
			f.state, f.first, f.http10, f.hasCL, f.hasTE = frHeaderLine, true, false, false, false
			f.lastHdr, f.cl, f.lineLen, f.prev = hdrOther, -1, 0, 0
			continue
		case frChunkCR, frChunkLF:
			want := byte('\r')
			if f.state == frChunkLF {
				want = '\n'
			}
			if b[0] != want {
				f.fail()
				return
			}
			b = b[1:]
			if f.state == frChunkCR {
				f.state = frChunkLF
			} else {
				f.state, f.lineLen = frChunkLine, 0
			}
			continue
		}
		// A line: frHeaderLine, frChunkLine or frTrailer. Whole runs up to
		// the next LF at once: a byte at a time cost as much as a tenth
		// of the request's own handling.
		seg, rest, ended := b, []byte(nil), false
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			seg, rest, ended = b[:i], b[i+1:], true
		}
		if len(seg) > 0 {
			if f.lineLen < len(f.line) {
				copy(f.line[f.lineLen:], seg)
			}
			if f.first {
				f.keepTail(seg)
			}
			f.lineLen += len(seg)
			f.prev = seg[len(seg)-1]
			if f.state == frChunkLine && f.lineLen > maxChunkLine {
				f.fail()
				return
			}
		}
		if !ended {
			return
		}
		b = rest
		f.endLine()
		f.lineLen = 0
	}
}

// keepTail keeps the request line's last bytes, seg being its next ones.
func (f *framing) keepTail(seg []byte) {
	t := f.tail[:]
	if len(seg) >= len(t) {
		copy(t, seg[len(seg)-len(t):])
		return
	}
	copy(t, t[len(seg):])
	copy(t[len(t)-len(seg):], seg)
}

// endLine judges the line just ended (its LF not kept).
func (f *framing) endLine() {
	n := min(f.lineLen, len(f.line))
	line := f.line[:n]
	crlf := f.lineLen > 0 && f.prev == '\r'
	if crlf && f.lineLen <= len(f.line) {
		line = line[:n-1]
	}
	empty := f.lineLen == 0 || (f.lineLen == 1 && crlf)
	switch f.state {
	case frHeaderLine:
		switch {
		case f.first:
			f.first = false
			t := f.tail[:]
			if crlf {
				t = t[:len(t)-1]
			}
			f.http10 = hasSuffix(t, " HTTP/1.0")
		case empty:
			f.endHeaders()
		case line[0] == ' ' || line[0] == '\t':
			// obs-fold: net/http joins it to the previous value.
			if f.lastHdr != hdrOther {
				f.fail()
			}
		default:
			f.header(line, f.lineLen > len(f.line))
		}
	case frChunkLine:
		if !crlf {
			f.fail() // net/http refuses a bare LF here
			return
		}
		size, ok := chunkSize(line, f.lineLen > len(f.line))
		switch {
		case !ok:
			f.fail()
		case size == 0:
			f.state = frTrailer
		default:
			f.state, f.remain = frChunkData, size
		}
	case frTrailer:
		if empty {
			f.state = frRequestStart
		}
	}
}

// header notes a Content-Length or Transfer-Encoding line; cut says the
// line was longer than what was kept.
func (f *framing) header(line []byte, cut bool) {
	f.lastHdr = hdrOther
	if hasPrefixFold(line, "transfer-encoding:") {
		f.hasTE, f.lastHdr = true, hdrTransferEncoding
		return
	}
	if !hasPrefixFold(line, "content-length:") {
		return
	}
	f.lastHdr = hdrContentLength
	v, ok := int64(-1), !cut
	if ok {
		v, ok = parseDecimal(trimSpace(line[len("content-length:"):]))
	}
	switch {
	case !ok:
		v = -1
	case f.hasCL && v != f.cl:
		v = -1 // net/http refuses differing values
	}
	f.hasCL, f.cl = true, v
}

// endHeaders decides the request's framing at its empty line.
func (f *framing) endHeaders() {
	switch {
	case f.hasTE && (f.hasCL || f.http10):
		f.fail()
	case f.hasTE:
		f.state, f.lineLen = frChunkLine, 0
	case f.hasCL && f.cl < 0:
		f.fail() // net/http refuses it; nothing to follow
	case f.hasCL && f.cl > 0:
		f.state, f.remain = frBody, f.cl
	default:
		f.state = frRequestStart
	}
}

// chunkSize parses a chunk-size line as net/http does: trailing blanks
// trimmed, an extension after ';' dropped, at most 16 hex digits. A line
// cut to what framing keeps parses only if its ';' was kept.
func chunkSize(line []byte, cut bool) (int64, bool) {
	ext := false
	for i, c := range line {
		if c == ';' {
			line, ext = line[:i], true
			break
		}
	}
	if cut && !ext {
		return 0, false
	}
	line = trimSpace(line)
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(c)
	}
	if n > 1<<62 {
		return 0, false
	}
	return int64(n), true
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

// hasPrefixFold reports whether b starts with lower, ASCII case ignored.
func hasPrefixFold(b []byte, lower string) bool {
	if len(b) < len(lower) {
		return false
	}
	for i := 0; i < len(lower); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
