package daemon

import (
	"os"
	"time"
)

// PollWatched is one poll of the watched files, for tests that step the
// watch themselves.
func (d *Daemon) PollWatched() { d.pollWatched() }

// Stop is the daemon's answer to the stop signal s, with later signals
// read from sig, for tests that cannot signal their own process.
func (d *Daemon) Stop(s os.Signal, sig <-chan os.Signal) error { return d.stop(s, sig, nil) }

// FailListener reports err as a listener's failure, as a Serve that
// returned would.
func (d *Daemon) FailListener(err error) { d.errc <- err }

// Handling is the number of HTTP/2 request handlers running.
func (d *Daemon) Handling() int { return d.proxy.Handling() }

// MetricsServing is the number of metrics connections serving a request
// and how long the newest of those requests has been under way.
func (d *Daemon) MetricsServing() (n int, newest time.Duration) {
	l := d.metricsLn
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for c := range l.conns {
		if !c.waiting {
			if age := now.Sub(c.since); n == 0 || age < newest {
				newest = age
			}
			n++
		}
	}
	return n, newest
}

// MetricsOpen is the number of metrics connections open now.
func (d *Daemon) MetricsOpen() int {
	l := d.metricsLn
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
