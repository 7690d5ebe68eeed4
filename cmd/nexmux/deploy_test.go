package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deployFile reads a file of deploy/ (the packaging this binary ships with).
func deployFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The nexmux image runs under the Kubernetes manifest's runAsNonRoot, which
// the kubelet can only verify for a numeric image user: a named one
// ("nonroot") fails the pod with CreateContainerConfigError.
func TestDockerfileUserIsNumeric(t *testing.T) {
	var stage, user string
	sc := bufio.NewScanner(strings.NewReader(deployFile(t, "Dockerfile")))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 4 && strings.EqualFold(f[0], "FROM") && strings.EqualFold(f[2], "AS"):
			stage = f[3]
		case len(f) == 2 && strings.EqualFold(f[0], "USER") && stage == "nexmux":
			user = f[1]
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user) {
		t.Errorf("target nexmux: USER %q: want a numeric non-root uid[:gid], which runAsNonRoot can verify", user)
	}
}

// serve calls mincore(2) at start (memtrim.NewHeapFloor), which systemd's
// @system-service set lacks: with an allow-list SystemCallFilter that does
// not add it, systemd kills nexmux with SIGSYS before it logs a line.
func TestSystemdUnitAllowsMincore(t *testing.T) {
	var allow, deny []string
	for _, line := range strings.Split(deployFile(t, "systemd/nexmux.service"), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "SystemCallFilter=")
		if !ok {
			continue
		}
		if rest, neg := strings.CutPrefix(v, "~"); neg {
			deny = append(deny, strings.Fields(rest)...)
		} else {
			allow = append(allow, strings.Fields(v)...)
		}
	}
	if len(allow) == 0 {
		return // no allow-list: nothing is killed for being unlisted
	}
	has := func(names []string) bool {
		for _, n := range names {
			if n == "mincore" {
				return true
			}
			if strings.HasPrefix(n, "@") {
				if members, err := syscallGroup(n); err == nil && members["mincore"] {
					return true
				}
			}
		}
		return false
	}
	if !has(allow) || has(deny) {
		t.Errorf("nexmux.service: SystemCallFilter allows %v, denies %v: mincore must be allowed", allow, deny)
	}
}

// syscallGroup expands a systemd syscall group with systemd-analyze, where
// installed.
func syscallGroup(name string) (map[string]bool, error) {
	out, err := exec.Command("systemd-analyze", "syscall-filter", name).Output()
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n")[1:] {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "@") {
			sub, err := syscallGroup(l)
			if err != nil {
				return nil, err
			}
			for k := range sub {
				m[k] = true
			}
			continue
		}
		m[l] = true
	}
	return m, nil
}

// iptables-legacy-restore creates its lock file, /run/xtables.lock: under
// ProtectSystem=strict /run is read-only, and before anything else has
// created the lock (early boot, the unit's place) it fails ("can't open
// lock file ... Read-only file system", status 4).
func TestIptablesUnitCanTakeTheXtablesLock(t *testing.T) {
	unit := deployFile(t, "systemd/nexmux-iptables.service")
	if !strings.Contains(unit, "\nProtectSystem=strict\n") {
		return
	}
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ReadWritePaths="); ok {
			for _, p := range strings.Fields(v) {
				if p == "/run" || p == "-/run" {
					return
				}
			}
		}
	}
	t.Error("nexmux-iptables.service: ProtectSystem=strict without ReadWritePaths=/run: iptables-legacy cannot create /run/xtables.lock")
}
