package daemon_test

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/daemon"
)

// The affinity secret is applied only by a restart (the running node set
// signs with the one it started with): a new secret in the same file is
// refused when it comes, naming it, not reported "reloaded" while the old
// one stays in force.
func TestNewAffinitySecretInSameFileNeedsRestart(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, "0123456789abcdef-first\n")
	file := filepath.Join(dir, "nexmux.yaml")
	writeFile(t, file, "route:\n  - team-a.nexmux.test=team-a\n")
	cfg := teamRoutes()
	cfg.AffinitySecretFile = secret
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: fastWatch}, ConfigFile: file, Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	writeFile(t, secret, "0123456789abcdef-second\n")
	waitFor(t, "the new secret's reload to be refused", func() bool {
		return counterValue(t, st.Daemon, "nexmux_reloads_total", map[string]string{"result": "error"}) >= 1
	})
	if !strings.Contains(logs.String(), "need a restart: affinity-secret-file (the file's secret)") {
		t.Fatalf("the refusal does not name the secret:\n%s", logs.String())
	}
	if n := counterValue(t, st.Daemon, "nexmux_reloads_total", map[string]string{"result": "ok"}); n != 0 {
		t.Fatalf("%v reloads reported as applied", n)
	}
	// The same secret written again (a kubelet refresh) is no change.
	writeFile(t, secret, "0123456789abcdef-first\n")
	writeFile(t, file, "route:\n  - team-a.nexmux.test=team-a\n  - team-c.nexmux.test=team-b\n")
	waitFor(t, "a later reload to apply", func() bool {
		return counterValue(t, st.Daemon, "nexmux_reloads_total", map[string]string{"result": "ok"}) >= 1
	})
}
