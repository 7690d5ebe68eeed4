package netns

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs f on an OS thread switched into the network namespace at path (a
// file such as /run/netns/NAME or /proc/PID/ns/net), then switches the
// thread back. Sockets f creates belong to that namespace for their whole
// life, whichever thread later reads or writes them: create listeners and
// dial connections inside f, use them anywhere.
//
// f runs on a goroutine of its own, locked to its thread, so nothing else is
// ever scheduled on a thread in the wrong namespace. If the thread cannot be
// switched back it stays locked when that goroutine exits, and the runtime
// then terminates the thread instead of reusing it.
//
// f must not start goroutines that create sockets: they would run on other
// threads, in the caller's namespace. Resolving host names inside f may do
// the same (a cgo or DNS lookup on another thread); use IP literals. f must
// not call t.Fatal (it is not the test's goroutine): Do then returns an
// error saying so.
func Do(path string, f func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", path, err)
	}
	defer unix.Close(target)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		var err error
		unlock := true
		// Runs however f ends: return, runtime.Goexit or panic (which
		// then goes on to crash the program, from the right namespace).
		defer func() {
			if unlock {
				runtime.UnlockOSThread()
			}
			done <- err
		}()
		orig, oerr := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if oerr != nil {
			err = fmt.Errorf("netns: open this thread's namespace: %w", oerr)
			return
		}
		defer unix.Close(orig)
		if serr := unix.Setns(target, unix.CLONE_NEWNET); serr != nil {
			err = fmt.Errorf("netns: enter %s: %w", path, serr)
			return
		}
		defer func() {
			if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
				// Leave the thread locked: it dies with this goroutine.
				unlock = false
				err = errors.Join(err, fmt.Errorf("netns: leave %s: %w", path, serr))
			}
		}()
		returned := false
		defer func() {
			if !returned {
				err = errors.New("netns: the function passed to Do did not return (runtime.Goexit or panic)")
			}
		}()
		err = f()
		returned = true
	}()
	return <-done
}
