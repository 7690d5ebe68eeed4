package daemon

// PollWatched is one poll of the watched files, for tests that step the
// watch themselves.
func (d *Daemon) PollWatched() { d.pollWatched() }
