package mux

import (
	"context"
	"log"
	"log/slog"
	"strconv"
	"strings"
)

// netHTTPErrorLog is the logger net/http's server writes its own lines
// to, at debug level. Its HTTP/2 server quotes the first 24 bytes a
// client sent after choosing h2 by ALPN when they are not the preface
// ("bogus greeting"): from a client that speaks HTTP/1 anyway, its
// request line, a query string's token or password included. Those lines
// keep the method and path, as an access line does, and nothing after.
func netHTTPErrorLog(h slog.Handler) *log.Logger {
	return slog.NewLogLogger(greetingRedactor{h}, slog.LevelDebug)
}

type greetingRedactor struct{ slog.Handler }

func (g greetingRedactor) Handle(ctx context.Context, r slog.Record) error {
	if msg, ok := redactGreeting(r.Message); ok {
		nr := slog.NewRecord(r.Time, r.Level, msg, r.PC)
		r.Attrs(func(a slog.Attr) bool { nr.AddAttrs(a); return true })
		r = nr
	}
	return g.Handler.Handle(ctx, r)
}

func (g greetingRedactor) WithAttrs(as []slog.Attr) slog.Handler {
	return greetingRedactor{g.Handler.WithAttrs(as)}
}

func (g greetingRedactor) WithGroup(name string) slog.Handler {
	return greetingRedactor{g.Handler.WithGroup(name)}
}

// bogusGreeting is how net/http's HTTP/2 server introduces the bytes
// (fmt's %q) that were not the client preface.
const bogusGreeting = "bogus greeting "

// redactGreeting rewrites a line quoting a bogus greeting to hold only
// what comes before a query, a blank after the request target, or a line
// end: "GET /v2/?access_token=…" becomes "GET /v2/", and an absolute-form
// target is dropped whole.
func redactGreeting(msg string) (string, bool) {
	i := strings.Index(msg, bogusGreeting)
	if i < 0 {
		return "", false
	}
	head, rest := msg[:i+len(bogusGreeting)], msg[i+len(bogusGreeting):]
	quoted, err := strconv.QuotedPrefix(rest)
	if err != nil {
		// Not the quoted form net/http writes: keep nothing of it.
		return head + "(not logged)", true
	}
	raw, _ := strconv.Unquote(quoted)
	keep, blanks := len(raw), 0
	for j := 0; j < len(raw); j++ {
		c := raw[j]
		if c == ' ' {
			blanks++
		}
		// An absolute-form target ("http://user:pw@host/…") starts with
		// what an access line's path never holds: only the method stays.
		absolute := blanks == 1 && c != ' ' && raw[j-1] == ' ' && c != '/'
		if c == '?' || c == '#' || c == '\r' || c == '\n' || blanks == 2 || c < ' ' || c >= 0x7f || absolute {
			keep = j
			break
		}
	}
	if keep == len(raw) {
		return msg, true
	}
	return head + strconv.Quote(raw[:keep]) + " (the rest of its " + strconv.Itoa(len(raw)) + " bytes not logged)" + rest[len(quoted):], true
}
