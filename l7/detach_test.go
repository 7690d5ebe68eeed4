package l7

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A detached context is the client's context without its cancellation, as
// context.WithoutCancel's: the request to Nexus outlives a client that
// left, and keeps every value (its trace, its state).
func TestDetachedKeepsValuesNotCancellation(t *testing.T) {
	if !detachable {
		t.Fatal("detached contexts are not taken for WithoutCancel's on this Go: every request to Nexus allocates on each context lookup")
	}
	type key struct{}
	client, leave := context.WithCancelCause(context.WithValue(context.Background(), key{}, "v"))
	var d detached
	ctx := detach(&d, client)
	if ctx != &d {
		t.Fatalf("detach gave %T, want the detached given", ctx)
	}
	ran := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ran) })
	attempt, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	leave(errors.New("client left"))

	if got := ctx.Value(key{}); got != "v" {
		t.Errorf("value %v, want the client context's", got)
	}
	if ctx.Err() != nil || ctx.Done() != nil || context.Cause(ctx) != nil {
		t.Errorf("the client left: detached context has Err %v, Done %v, Cause %v; want none", ctx.Err(), ctx.Done(), context.Cause(ctx))
	}
	if _, ok := ctx.Deadline(); ok {
		t.Error("a deadline on a detached context")
	}
	if attempt.Err() != nil {
		t.Errorf("the client left: an attempt derived from the detached context ended: %v", context.Cause(attempt))
	}
	down := errors.New("node down")
	stop(down)
	if got := context.Cause(attempt); got != down {
		t.Errorf("attempt's cause %v, want its own %v", got, down)
	}
	select {
	case <-ran:
		t.Error("AfterFunc ran on a detached context")
	case <-time.After(50 * time.Millisecond):
	}
}
