package l7

import (
	"context"
	"errors"
	"time"
)

// detached is its parent's values without its cancellation, as
// context.WithoutCancel gives, but without an allocation on every Value:
// the standard one boxes itself for each lookup, and a request to Nexus
// has its context's values looked up several times (its trace by the
// Transport, twice; its state by ModifyResponse). Like WithoutCancel's,
// it is never done, and context.Cause finds no cause in it: Cause asks a
// context's Value for its cancelable parent only once its Err is set,
// which a detached context's never is (detachable checks this).
type detached struct{ parent context.Context }

func (*detached) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*detached) Done() <-chan struct{}       { return nil }
func (*detached) Err() error                  { return nil }
func (d *detached) Value(key any) any         { return d.parent.Value(key) }
func (d *detached) String() string            { return "l7.detached" }

// detach is ctx without its cancellation: d, where the context package
// treats it as it treats WithoutCancel's (detachable), else WithoutCancel.
func detach(d *detached, ctx context.Context) context.Context {
	if !detachable {
		return context.WithoutCancel(ctx)
	}
	*d = detached{ctx}
	return d
}

// detachable: a detached context hides its parent's cancellation from
// context.Cause and from the contexts derived from it.
var detachable = func() bool {
	parent, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("canceled"))
	d := &detached{parent}
	child, stop := context.WithCancelCause(d)
	defer stop(nil)
	stopped := errors.New("stopped")
	ok := context.Cause(d) == nil && child.Err() == nil && context.Cause(child) == nil
	stop(stopped)
	return ok && context.Cause(child) == stopped
}()
