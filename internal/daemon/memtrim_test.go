package daemon_test

import (
	"log/slog"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
	"github.com/nexmux/nexmux/internal/memtrim"
)

var trimSink [][]byte

// throwAway makes n MiB of garbage. The test runs with the collector off,
// so only a trim returns it (and the daemon's own trimmer sees it).
func throwAway(n int) {
	for range n {
		trimSink = append(trimSink, make([]byte, 1<<20))
	}
	trimSink = nil
}

// A quiet daemon holding freed memory returns it to the OS, counts it in
// nexmux_memory_trims_total, and no-memory-trim, changed by a reload, turns
// that off and on again.
func TestMemoryTrimWhenQuietAndReloadSwitchesIt(t *testing.T) {
	policy := memtrim.DefaultPolicy
	policy.QuietRate, policy.Quiet, policy.MinGap = 8<<20, 500*time.Millisecond, 0
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	base := "route: [\"team-a.nexmux.test=team-a\"]\n"
	writeFile(t, file, base)
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: fastWatch, MemTrimPolicy: policy}, ConfigFile: file, Config: config.Config{MetricsListen: "127.0.0.1:0"},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

	runtime.GC()
	gcPercent := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(gcPercent) })

	// Read the counter without a scrape every few milliseconds: scrapes
	// allocate, and a process that allocates is not quiet. The race
	// detector makes this test's own work allocate about 1 MiB/s, the
	// default policy's quiet rate: allow more, and a shorter quiet period.
	trims := func() float64 {
		time.Sleep(300 * time.Millisecond)
		return counter(t, st, "nexmux_memory_trims_total")
	}
	reloads := func() int { return strings.Count(logs.String(), "msg=reloaded") }

	start := time.Now()
	throwAway(128)
	waitFor(t, "a trim of 128 MiB of garbage", func() bool { return trims() >= 1 })
	took := time.Since(start)
	if !strings.Contains(logs.String(), "returned freed memory to the OS") {
		t.Errorf("no debug line for the trim:\n%s", logs.String())
	}

	writeFile(t, file, base+"no-memory-trim: true\n")
	waitFor(t, "the reload", func() bool { return reloads() == 1 })
	throwAway(128)
	// The first trim came within took; give a disabled one three times
	// that, and check the process was quiet enough meanwhile that a trim
	// would have been due.
	allocs := memtrim.Read().Allocs
	wait := 3*took + time.Second
	time.Sleep(wait)
	if n := trims(); n != 1 {
		t.Fatalf("%v trims with no-memory-trim: true, want still 1", n)
	}
	if rate := float64(memtrim.Read().Allocs-allocs) / wait.Seconds(); rate > float64(policy.QuietRate)/2 {
		t.Fatalf("the test allocated %.1f MiB/s while no-memory-trim was set: too busy to tell a disabled trimmer from a waiting one", rate/(1<<20))
	}
	if s := memtrim.Read(); s.Objects-s.Live < 100<<20 {
		t.Fatalf("the garbage is gone with no-memory-trim: true (%d MiB left)", (s.Objects-s.Live)>>20)
	}

	writeFile(t, file, base)
	waitFor(t, "the second reload", func() bool { return reloads() == 2 })
	waitFor(t, "a trim once no-memory-trim is gone", func() bool { return trims() >= 2 })
}
