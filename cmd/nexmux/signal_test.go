//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
)

// A SIGHUP that comes while serve is still starting (reading its
// configuration and certificates) does not end the process: its default
// action would, and systemd counts a SIGHUP death as clean, so
// Restart=on-failure would leave nexmux stopped after an early
// 'systemctl reload'.
func TestEarlySIGHUPDoesNotKill(t *testing.T) {
	bin := buildBinary(t)
	// The configuration comes through a FIFO: serve is then known to be
	// reading it, before its listeners or its own signal handling.
	dir := t.TempDir()
	conf := filepath.Join(dir, "nexmux.yaml")
	if err := syscall.Mkfifo(conf, 0o600); err != nil {
		t.Skip("no FIFO:", err)
	}
	const yaml = "listen: 127.0.0.1:0\nport: [18082=team-a]\nupstream: [http://127.0.0.1:9]\n"
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve", "--config", conf)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	fifo, err := os.OpenFile(conf, os.O_WRONLY, 0) // returns once serve opened it
	if err != nil {
		t.Fatal(err)
	}
	hup := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				return
			}
		}
	}
	hup(50 * time.Millisecond)
	// Reloads read a plain file from now on.
	plain := filepath.Join(dir, "plain.yaml")
	if err := os.WriteFile(plain, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(plain, conf); err != nil {
		t.Fatal(err)
	}
	_, _ = fifo.WriteString(yaml)
	fifo.Close()
	hup(300 * time.Millisecond)
	select {
	case err := <-exited:
		t.Fatalf("nexmux ended by an early SIGHUP: %v\n%s", err, stderr.String())
	case <-time.After(200 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("nexmux did not exit after SIGTERM")
	}
}

// With --log-format json every line serve writes is JSON, also with
// --drain-upstream at start and on reload: the drain line came from a
// node set built with the default logger, in text, into a JSON stream;
// and with a Kubernetes service link in NEXMUX_PORT, whose warning was.
func TestJSONLogsHaveOnlyJSONLines(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nexmux.yaml")
	const yaml = "listen: 127.0.0.1:0\nport: [18082=team-a]\nlog-format: json\nhealth-interval: 1h\n" +
		"upstream: [http://127.0.0.1:9, http://127.0.0.1:10]\ndrain-upstream: [http://127.0.0.1:10]\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr testnet.Buffer
	cmd := exec.Command(bin, "serve", "--config", conf)
	cmd.Stderr = &stderr
	// A Kubernetes service link (a Service named nexmux): its warning is
	// a JSON line too.
	cmd.Env = append(os.Environ(), "NEXMUX_PORT=tcp://10.96.0.17:443", "NEXMUX_SERVICE_HOST=10.96.0.17")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor := func(what string) {
		t.Helper()
		for end := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), what); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("no %q in:\n%s", what, stderr.String())
			}
		}
	}
	waitFor(`"nexmux serving"`)
	waitFor(`"level":"WARN","msg":"ignoring NEXMUX_PORT=tcp://10.96.0.17:443`)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(`"reloaded"`)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("not JSON: %s", line)
		}
	}
}

// A reload re-reads the config file and the files it names, not the
// environment or the command line: what those drew at start (a misspelt
// variable, a flag given twice) is not logged again by every SIGHUP or
// file change, nor is a warning about the file that a reload did not
// change (a key a flag overrides). A warning a reload brings is logged
// once, an overridden key whose value the file changes is warned of again
// (the edit changes nothing), and a certificate about to expire is still named on each reload
// (its daily reminder counts from the last reload).
func TestReloadRepeatsNoUnchangedWarning(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nexmux.yaml")
	const yaml = "listen: 127.0.0.1:0\nport: [18082=team-a]\nupstream: [http://127.0.0.1:9]\nhealth-interval: 1h\nidle-timeout: 1m\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	crt, key := certFilesFor(t, 48*time.Hour)
	var stderr testnet.Buffer
	cmd := exec.Command(bin, "serve", "--config", conf, "--cert", crt, "--key", key,
		"--max-conns", "500", "--max-conns", "700", "--idle-timeout", "2m", "--drain-timeout", "20s")
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "NEXMUX_ROUTES=a.example.com=team-a")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitCount := func(what string, n int) {
		t.Helper()
		for end := time.Now().Add(20 * time.Second); strings.Count(stderr.String(), what) < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%q not %d times in:\n%s", what, n, stderr.String())
			}
		}
	}
	waitCount("nexmux serving", 1)
	// Each file routes one more port, so that its reload's line tells it
	// from a reload of the one before (the watcher may see a write too).
	for i, file := range []string{
		yaml + "port: [18082=team-a, 18083=team-b]\n",
		// A new overridden key: a new warning.
		yaml + "port: [18082=team-a, 18083=team-b, 18084=team-c]\ndrain-timeout: 10s\n",
		// An overridden key edited: its warning says why the edit
		// changes nothing.
		strings.Replace(yaml, "idle-timeout: 1m", "idle-timeout: 3m", 1) + "port: [18082=team-a, 18083=team-b, 18084=team-c, 18085=team-d]\ndrain-timeout: 10s\n",
	} {
		if err := os.WriteFile(conf, []byte(strings.Replace(file, "port: [18082=team-a]\n", "", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitCount(fmt.Sprintf("msg=reloaded routes=%d", i+2), 1)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	logs := stderr.String()
	for what, want := range map[string]int{
		"ignoring NEXMUX_ROUTES":         1,
		"--max-conns given 2 times":      1,
		"idle-timeout is overridden by":  2,
		"drain-timeout is overridden by": 1,
	} {
		if got := strings.Count(logs, what); got != want {
			t.Errorf("%q logged %d times over a start and three reloads, want %d", what, got, want)
		}
	}
	// The file's change may reload once more, by the watcher.
	if got, want := strings.Count(logs, "certificate for *.example.com expires on"), 1+strings.Count(logs, "msg=reloaded"); got != want {
		t.Errorf("the expiring certificate named %d times over a start and %d reloads, want %d", got, want-1, want)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", logs)
	}
}
