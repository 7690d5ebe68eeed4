package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The real binary, built from this checkout, reports its build info.
func TestVersionFromBuildInfo(t *testing.T) {
	bin := buildBinary(t)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		s := string(out)
		for _, want := range []string{"nexmux ", "module:   github.com/nexmux/nexmux", "revision: ", "go:       " + runtime.Version()} {
			if !strings.Contains(s, want) {
				t.Errorf("%v: no %q in\n%s", args, want, s)
			}
		}
	}
}

// A build without VCS info (the Dockerfile's: no .git in the build
// context) reports the revision it was given at link time.
func TestVersionRevisionGivenAtBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "nexmux")
	build := exec.Command("go", "build", "-buildvcs=false", "-ldflags", "-X main.revision=0123abcd", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revision: 0123abcd (given at build)\n") {
		t.Errorf("version: %v\n%s", err, out)
	}
}

// The Dockerfile's build (no .git in its context) is given the revision
// and its commit time at link time; `nexmux version` names both, as issue
// 17 asks of every build (revision and time).
func TestVersionRevisionTimeGivenAtBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	df := deployFile(t, "Dockerfile")
	for _, v := range []string{"-X main.revision=", "-X main.revisionTime="} {
		if !strings.Contains(df, v) {
			t.Errorf("Dockerfile: the go build does not set %s", v)
		}
	}
	bin := filepath.Join(t.TempDir(), "nexmux")
	build := exec.Command("go", "build", "-buildvcs=false", "-ldflags",
		"-X main.revision=0123abcd -X main.revisionTime=2026-01-02T03:04:05Z", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revision: 0123abcd (given at build)\n") ||
		!strings.Contains(string(out), "time:     2026-01-02T03:04:05Z\n") {
		t.Errorf("version: %v\n%s", err, out)
	}
}

func TestHelpEndsWithExamples(t *testing.T) {
	for _, cmd := range []string{"serve", "check"} {
		out, _, _ := run(t, cmd, "--help")
		i := strings.Index(out, "EXAMPLES:")
		if i < 0 || strings.Index(out, "OPTIONS:") > i {
			t.Fatalf("%s --help: examples missing or not at the end:\n%s", cmd, out)
		}
		tail := out[i:]
		for _, want := range []string{"One name per team", "Legacy connector ports", "HA", "nexmux " + cmd + " ", "--upstream http://nexus-1:8081/nexus"} {
			if !strings.Contains(tail, want) {
				t.Errorf("%s --help: examples lack %q", cmd, want)
			}
		}
	}
}

// buildBinary builds nexmux from this checkout into a temporary directory
// (skipped with -short).
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "nexmux")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// version takes no argument: a stray word gets exit 2 and its name, as
// every other command's does, not the version as if it were not there.
func TestVersionRefusesAnArgument(t *testing.T) {
	runRefused(t, "version extra", []string{"version", "extra"}, `unexpected argument "extra"`)
	if out, errs, code := run(t, "version"); code != 0 || !strings.Contains(out, "go:") {
		t.Errorf("version: exit %d:\n%s%s", code, out, errs)
	}
}
