//go:build unix

package daemon_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// servingHUP sends this process a SIGHUP when the daemon logs "nexmux
// serving", and returns only once os/signal has handed it out, so Run sees
// it exactly as a tool that waited for that line and then reloaded would.
func servingHUP(t *testing.T, seen chan os.Signal) func(slog.Record) {
	return func(r slog.Record) {
		if r.Message != "nexmux serving" {
			return
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Error(err)
		}
		select {
		case <-seen:
		case <-time.After(5 * time.Second):
			t.Error("the SIGHUP sent at \"nexmux serving\" never reached os/signal")
		}
	}
}

// A SIGHUP sent once "nexmux serving" is logged reloads: that line is how
// tools (and the tests that run the binary) know nexmux is up, and the
// README drops only a SIGHUP that comes while serve is still starting.
func TestSIGHUPOnceServingReloads(t *testing.T) {
	guardSignals(t)
	seen := make(chan os.Signal, 1)
	signal.Notify(seen, syscall.SIGHUP)
	t.Cleanup(func() { signal.Stop(seen) })

	c := config.Defaults()
	c.Listen = "127.0.0.1:0"
	c.Port = []string{"18082=team-a"}
	c.DrainTimeout = time.Second
	b, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	var reloads atomic.Int32
	logger := slog.New(beforeRecord{discardLogger().Handler(), servingHUP(t, seen)})
	d, err := daemon.New(b, daemon.Options{Logger: logger, WatchInterval: time.Hour,
		Reload: func() (*config.Runtime, error) {
			reloads.Add(1)
			return c.Build()
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	defer func() {
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			t.Error(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("still serving 10 s after SIGTERM")
		}
	}()
	for end := time.Now().Add(5 * time.Second); reloads.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("no reload 5 s after a SIGHUP sent once \"nexmux serving\" was logged")
		}
	}
}
