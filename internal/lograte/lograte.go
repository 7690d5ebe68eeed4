// Package lograte keeps a flood of identical refusals from becoming a flood
// of log lines: at most one line a second, carrying how many there were.
package lograte

import (
	"sync"
	"sync/atomic"
	"time"
)

// Limiter counts events and lets one log line through a second.
type Limiter struct {
	n      atomic.Int64 // events since the last line
	logged atomic.Int64 // unix nanoseconds of the last line
}

// Note counts an event. It reports whether to log it, and then how many
// events the line stands for (this one and those not logged since the
// last line).
func (l *Limiter) Note() (log bool, n int64) {
	n = l.n.Add(1)
	now, last := time.Now().UnixNano(), l.logged.Load()
	if now-last >= int64(time.Second) && l.logged.CompareAndSwap(last, now) {
		l.n.Add(-n)
		return true, n
	}
	return false, 0
}

// RefusalLines is how many refusals of one reason a second are logged one
// by one: clients choose how often they are refused (and the names
// logged), so a loop of them must not become a line each.
const RefusalLines = 10

// Burst lets up to Max events a second be logged one by one and counts
// the rest, so that the next event logged can say how many went unlogged.
// The zero value logs nothing; set Max.
type Burst struct {
	Max     int
	mu      sync.Mutex
	sec     int64 // the second lines counts
	lines   int
	dropped int64
}

// Unlogged adds to a line's args how many events went unlogged before
// it, when some did: the key every limited line uses.
func Unlogged(args []any, dropped int64) []any {
	if dropped > 0 {
		return append(args, "unlogged", dropped)
	}
	return args
}

// Note records one event: log is whether to write its line, and dropped
// how many events since the last line were not written.
func (b *Burst) Note() (log bool, dropped int64) {
	now := time.Now().Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	if now != b.sec {
		b.sec, b.lines = now, 0
	}
	if b.lines >= b.Max {
		b.dropped++
		return false, 0
	}
	b.lines++
	dropped, b.dropped = b.dropped, 0
	return true, dropped
}
