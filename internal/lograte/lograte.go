// Package lograte keeps a flood of identical refusals from becoming a flood
// of log lines: at most one line a second, carrying how many there were.
package lograte

import (
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
