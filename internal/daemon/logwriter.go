package daemon

import (
	"io"
	"log/slog"
	"sync"
	"time"
)

// Access-log batching. One access line per request written on its own costs
// a write(2) per request, a visible share of the CPU under keep-alive load
// (README, Performance). Access lines are gathered and written together when
// accessLogBuffer fills or AccessLogDelay after the first of them, whichever
// comes first: like nginx's "access_log ... buffer= flush=", with a short
// delay so a log shipper or an operator tailing the log sees requests at
// once. Every other line (startup, reload, warnings, errors) is written
// immediately, after whatever access lines precede it, so the order in the
// log is the order of events. Close at exit writes what is pending.
const (
	AccessLogDelay  = 50 * time.Millisecond
	accessLogBuffer = 64 << 10
)

// LogWriter orders and batches log lines for one output.
type LogWriter struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	timer *time.Timer // armed while buf holds lines
	delay time.Duration
	// closed: every line is written at once (lines logged after the
	// last Flush at exit, by handlers still finishing, are not lost).
	closed bool
}

// NewLogWriter returns a LogWriter over w; delay bounds how long an
// access line may wait.
func NewLogWriter(w io.Writer, delay time.Duration) *LogWriter {
	return &LogWriter{w: w, delay: delay}
}

// Write gathers one access line (an slog handler writes a whole line per
// call).
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if l.closed || len(l.buf) >= accessLogBuffer {
		return len(p), l.flushLocked()
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(l.delay, func() { _ = l.Flush() })
	}
	return len(p), nil
}

// Flush writes every gathered line.
func (l *LogWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

// Close writes every gathered line and makes later lines go out at once.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return l.flushLocked()
}

func (l *LogWriter) flushLocked() error {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(l.buf) == 0 {
		return nil
	}
	_, err := l.w.Write(l.buf)
	if cap(l.buf) > 4*accessLogBuffer {
		l.buf = nil // a burst of huge lines should not pin memory
	} else {
		l.buf = l.buf[:0]
	}
	return err
}

// Immediate returns a writer for lines that are written at once, after
// the access lines gathered before them.
func (l *LogWriter) Immediate() io.Writer { return immediateWriter{l} }

type immediateWriter struct{ l *LogWriter }

func (i immediateWriter) Write(p []byte) (int, error) {
	l := i.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	return len(p), l.flushLocked()
}

// NewLoggers returns the logger for operational lines and the one for
// access lines, both writing to lw in order (see LogWriter).
func NewLoggers(lw *LogWriter, format, level string) (log, access *slog.Logger) {
	access = newLogger(lw, format, level)
	access = slog.New(&accessHandler{Handler: access.Handler(), w: lw, json: format == "json"})
	return newLogger(lw.Immediate(), format, level), access
}
