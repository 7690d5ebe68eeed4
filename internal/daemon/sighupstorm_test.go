//go:build unix

package daemon_test

import (
	"context"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// A SIGTERM that comes behind a burst of SIGHUPs (a tool reloading once per
// file it changed) while a reload is under way still stops nexmux: os/signal
// drops a signal whose channel is full, and the SIGHUPs waiting there must
// not take the place of the SIGTERM (the kubelet or systemd sends it once,
// then SIGKILL: no drain).
func TestSIGTERMBehindSIGHUPStormStops(t *testing.T) {
	guardSignals(t)

	c := config.Defaults()
	c.Listen = "127.0.0.1:0"
	c.Port = []string{"18082=team-a"}
	c.DrainTimeout = time.Second
	b, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var reloads atomic.Int32
	d, err := daemon.New(b, daemon.Options{Logger: discardLogger(), WatchInterval: time.Hour,
		Reload: func() (*config.Runtime, error) {
			if reloads.Add(1) == 1 {
				<-release // a slow reload (a large route table)
			}
			return c.Build()
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()

	kill := func(s syscall.Signal) {
		if err := syscall.Kill(os.Getpid(), s); err != nil {
			t.Fatal(err)
		}
	}
	// Until Run takes SIGHUP: then its first reload waits for release.
	for reloads.Load() == 0 {
		kill(syscall.SIGHUP)
		time.Sleep(10 * time.Millisecond)
	}
	for range 10 {
		kill(syscall.SIGHUP)
		time.Sleep(20 * time.Millisecond)
	}
	kill(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	close(release)

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("still serving 5 s after a SIGTERM that followed SIGHUPs (%d reloads)", reloads.Load())
		kill(syscall.SIGTERM)
		<-done
	}
}

// guardSignals keeps SIGHUP and SIGTERM sent to this process from ending
// it, before Run takes them or after it returns, until t ends.
func guardSignals(t *testing.T) {
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGHUP, syscall.SIGTERM)
	t.Cleanup(func() { signal.Stop(guard) })
}
