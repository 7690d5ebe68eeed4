package daemon

import (
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// accessHandler is the access logger's handler: slog's text or JSON handler
// for any line, and beside it a formatter for the one line every request
// writes, which appends the same bytes slog would into a pooled buffer
// (no Record, no attribute slice, no handler state per request).
//
// Enabled, Handle and the rest are the embedded handler's; WithAttrs and
// WithGroup return it bare, since their lines are no longer the
// formatter's.
type accessHandler struct {
	slog.Handler
	w    io.Writer
	json bool
}

// accessLine is one request line's fields, in the order they are logged.
type accessLine struct {
	route, repo, method, path string
	status                    int
	bytesIn, bytesOut         int64
	duration                  time.Duration
	client                    string
	registry, reason          string // omitted when ""
}

// attrs are l's attributes for any other slog handler.
func (l *accessLine) attrs() []slog.Attr {
	a := []slog.Attr{
		slog.String("route", l.route), slog.String("repo", l.repo), slog.String("method", l.method),
		slog.String("path", l.path), slog.Int("status", l.status), slog.Int64("bytes_in", l.bytesIn),
		slog.Int64("bytes_out", l.bytesOut), slog.Duration("duration", l.duration),
		slog.String("client", l.client),
	}
	if l.registry != "" {
		a = append(a, slog.String("registry", l.registry))
	}
	if l.reason != "" {
		a = append(a, slog.String("reason", l.reason))
	}
	return a
}

var accessBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// write logs l at Info, as slog.Logger.LogAttrs would with l's attributes.
func (h *accessHandler) write(t time.Time, l *accessLine) {
	bp := accessBufs.Get().(*[]byte)
	b := h.appendLine((*bp)[:0], t, l)
	_, _ = h.w.Write(b)
	if cap(b) <= 16<<10 {
		*bp = b
		accessBufs.Put(bp)
	}
}

func (h *accessHandler) appendLine(b []byte, t time.Time, l *accessLine) []byte {
	t = t.Round(0)
	if h.json {
		b = append(b, `{"time":"`...)
		b = appendRFC3339Nano(b, t)
		b = append(b, `","level":"INFO","msg":"request"`...)
	} else {
		b = append(b, "time="...)
		b = appendRFC3339Millis(b, t)
		b = append(b, " level=INFO msg=request"...)
	}
	b = h.str(b, "route", l.route)
	b = h.str(b, "repo", l.repo)
	b = h.str(b, "method", l.method)
	b = h.str(b, "path", l.path)
	b = h.num(b, "status", int64(l.status))
	b = h.num(b, "bytes_in", l.bytesIn)
	b = h.num(b, "bytes_out", l.bytesOut)
	b = h.key(b, "duration")
	if h.json {
		b = strconv.AppendInt(b, int64(l.duration), 10)
	} else {
		b = append(b, l.duration.String()...)
	}
	b = h.str(b, "client", l.client)
	if l.registry != "" {
		b = h.str(b, "registry", l.registry)
	}
	if l.reason != "" {
		b = h.str(b, "reason", l.reason)
	}
	if h.json {
		b = append(b, '}')
	}
	return append(b, '\n')
}

func (h *accessHandler) key(b []byte, k string) []byte {
	if h.json {
		return append(append(append(b, ",\""...), k...), "\":"...)
	}
	return append(append(append(b, ' '), k...), '=')
}

func (h *accessHandler) str(b []byte, k, v string) []byte {
	b = h.key(b, k)
	if h.json {
		return append(appendJSONString(append(b, '"'), v), '"')
	}
	if textNeedsQuoting(v) {
		return strconv.AppendQuote(b, v)
	}
	return append(b, v...)
}

func (h *accessHandler) num(b []byte, k string, v int64) []byte {
	return strconv.AppendInt(h.key(b, k), v, 10)
}

// appendRFC3339Millis is slog's text time: RFC 3339 with exactly three
// fractional digits.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	f := secondOf(t)
	ms := t.Nanosecond() / 1e6
	b = append(b, f.date...)
	b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	return append(b, f.zone...)
}

// appendRFC3339Nano is t.AppendFormat(b, time.RFC3339Nano), slog's JSON
// time: the fraction without its trailing zeros, none for a whole second.
func appendRFC3339Nano(b []byte, t time.Time) []byte {
	f := secondOf(t)
	b = append(b, f.date...)
	if ns := t.Nanosecond(); ns != 0 {
		var d [10]byte
		d[0] = '.'
		for i := 9; i > 0; i-- {
			d[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return append(b, f.zone...)
}

// formattedSecond is one second of time in one location as RFC 3339 writes
// it. Formatting the date and the zone is most of the cost of an access
// line's time, and it changes once a second: it is done then, not per line.
type formattedSecond struct {
	unix int64
	loc  *time.Location
	date string // 2006-01-02T15:04:05
	zone string // Z or -07:00
}

var lastSecond atomic.Pointer[formattedSecond]

func secondOf(t time.Time) *formattedSecond {
	u, loc := t.Unix(), t.Location()
	if f := lastSecond.Load(); f != nil && f.unix == u && f.loc == loc {
		return f
	}
	f := &formattedSecond{unix: u, loc: loc, date: t.Format("2006-01-02T15:04:05"), zone: t.Format("Z07:00")}
	lastSecond.Store(f)
	return f
}

// jsonSafe reports an ASCII byte a JSON string holds as it is.
func jsonSafe(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' }

// textNeedsQuoting is slog's rule for text values.
func textNeedsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if textQuote[c] {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// textQuote[c] says whether ASCII byte c makes a text value quoted: a
// space, '=', '"' or a control byte (a backslash alone does not).
var textQuote = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		b := byte(c)
		t[c] = b != '\\' && (b == ' ' || b == '=' || !jsonSafe(b))
	}
	return t
}()

// appendJSONString escapes s as slog's JSON handler does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(append(b, s[start:i]...), `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(append(b, s[start:i]...), `\u202`...)
			b = append(b, hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}
