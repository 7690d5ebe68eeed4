package main

import (
	"bufio"
	"os"
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
