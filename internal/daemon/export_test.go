package daemon

import "os"

// PollWatched is one poll of the watched files, for tests that step the
// watch themselves.
func (d *Daemon) PollWatched() { d.pollWatched() }

// Stop is the daemon's answer to the stop signal s, with later signals
// read from sig, for tests that cannot signal their own process.
func (d *Daemon) Stop(s os.Signal, sig <-chan os.Signal) { d.stop(s, sig) }
