package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMirrorCheckFlagEnvFile: --mirror from a flag, NEXMUX_MIRROR and the
// YAML key mirror; `nexmux check` prints the mirror table.
func TestMirrorCheckFlagEnvFile(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth")
	if err := os.WriteFile(auth, []byte("puller:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.yaml")
	yaml := "cert: [" + crt + "]\nkey: [" + key + "]\nmirror:\n  - mirror.example.com/docker.io=dockerhub-proxy\n  - mirror.example.com/GHCR.io=ghcr-proxy\nmirror-auth-file: " + auth + "\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "check", "--config", file)
	for _, want := range []string{"mirror.example.com", "mirror (/v2/ and token: /repository/dockerhub-proxy/)", "docker.io", "ghcr.io", "/repository/ghcr-proxy/", "--mirror-auth-file"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("file: exit %d, output lacks %q:\n%s%s", code, want, out, errs)
		}
	}
	t.Setenv("NEXMUX_MIRROR", "m.example.com/quay.io=quay-proxy,m.example.com/registry.corp.test:5000=corp-proxy")
	out, errs, code = run(t, "check", "--config", file)
	if code != 0 || !strings.Contains(out, "registry.corp.test:5000") || !strings.Contains(out, "/repository/quay-proxy/") || strings.Contains(out, "ghcr-proxy") {
		t.Errorf("env: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = run(t, "check", "--config", file, "--mirror", "x.example.com/registry-1.docker.io=hub")
	if code != 0 || !strings.Contains(out, "x.example.com") || !strings.Contains(out, "docker.io") || !strings.Contains(out, "/repository/hub/") {
		t.Errorf("flag: exit %d\n%s%s", code, out, errs)
	}
}

// TestMirrorBadFlagsListEveryProblem: every problem of --mirror at once.
func TestMirrorBadFlagsListEveryProblem(t *testing.T) {
	crt, key := certFiles(t)
	_, errs, code := run(t, "check", "--cert", crt, "--key", key,
		"--route", "a.example.com=team-a",
		"--mirror", "a.example.com/docker.io=hub",
		"--mirror", "m.example.com/docker.io=hub", "--mirror", "m.example.com/index.docker.io=hub2",
		"--mirror", "m.example.com/ghcr..io=x", "--mirror", "m.example.com/quay.io=bad/repo",
		"--mirror", "nohost=x", "--mirror-auth-file", "/nonexistent-auth")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{"cannot also be a --route", "already mirrored", "not a registry name", "bad/repo", "want HOST/REGISTRY=REPO", "nonexistent-auth"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}
