package daemon

import "os"

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
