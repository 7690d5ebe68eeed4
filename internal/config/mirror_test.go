package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The credentials line is sent as written: Nexus compares the password
// byte for byte, so blanks in and after it are part of it. Only the line
// ending (CRLF from a file edited on Windows too) and an indent go.
func TestLoadMirrorAuthKeepsBlanks(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ file, want string }{
		{"puller:secret\n", "puller:secret"},
		{"puller:secret\r\n", "puller:secret"},
		{"puller:secret", "puller:secret"},
		{"puller:secret with blanks \t\n", "puller:secret with blanks \t"},
		{"puller:  secret\r\n", "puller:  secret"},
		{" \tpuller:secret\n", "puller:secret"},
		{"# the mirror's Nexus user\n  \t\n   # indented comment\npuller: secret \n\n", "puller: secret "},
	} {
		f := filepath.Join(dir, "auth")
		if err := os.WriteFile(f, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := loadMirrorAuth(f)
		if want := "Basic " + base64.StdEncoding.EncodeToString([]byte(tc.want)); err != nil || got != want {
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(got, "Basic "))
			t.Errorf("%q: sent %q (%v), want %q", tc.file, raw, err, tc.want)
		}
	}
	for _, bad := range []string{":secret\n", " \t:secret\n", "no-colon\n", "a:b\nc:d\n", "# only a comment\n"} {
		f := filepath.Join(dir, "auth")
		if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := loadMirrorAuth(f); err == nil {
			t.Errorf("%q: accepted as %q", bad, got)
		}
	}
}

// A repository that serves two registries (one group of every proxy, as
// Sonatype's docker-group) cannot tell them apart: Nexus ignores ns, so a
// ghcr.io pull of a name Docker Hub also has reads Docker Hub's image
// (the group's first member). Build warns, naming the repository and its
// registries; one repository per registry draws no warning.
func TestBuildWarnsOfAMirrorRepositoryServingTwoRegistries(t *testing.T) {
	dir := t.TempDir()
	crt, key := writeCert(t, dir, "m", "mirror.example.com", "mirror2.example.com")
	for _, tc := range []struct {
		mirrors []string
		want    string // "" = no mirror warning
	}{
		{[]string{"mirror.example.com/docker.io=hub", "mirror.example.com/ghcr.io=ghcr"}, ""},
		{[]string{"mirror.example.com/docker.io=hub", "mirror2.example.com/docker.io=hub"}, ""},
		{[]string{"mirror.example.com/docker.io=docker-group", "mirror.example.com/ghcr.io=docker-group", "mirror.example.com/quay.io=quay"},
			"repository docker-group serves docker.io, ghcr.io"},
		{[]string{"mirror.example.com/docker.io=docker-group", "mirror2.example.com/quay.io=docker-group"},
			"repository docker-group serves docker.io, quay.io"},
	} {
		c := Defaults()
		c.Cert, c.Key = []string{crt}, []string{key}
		c.Mirror = tc.mirrors
		b, err := c.Build()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(b.Warnings, "\n")
		if tc.want == "" && strings.Contains(got, "serves") || !strings.Contains(got, tc.want) {
			t.Errorf("%v: warnings %q, want %q", tc.mirrors, got, tc.want)
		}
	}
}

// A file holding a Nexus password or the affinity secret that every user
// of the host may read draws a warning, as a world-readable
// --socks5-auth-file does; a private one does not.
func TestBuildWarnsOfSecretFilesOthersMayRead(t *testing.T) {
	dir := t.TempDir()
	crt, key := writeCert(t, dir, "m", "mirror.example.com")
	auth := filepath.Join(dir, "mirror-auth")
	secret := filepath.Join(dir, "affinity-secret")
	if err := os.WriteFile(auth, []byte("robot:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	build := func() string {
		c := Defaults()
		c.Cert, c.Key = []string{crt}, []string{key}
		c.Mirror = []string{"mirror.example.com/docker.io=dockerhub-proxy"}
		c.MirrorAuthFile, c.AffinitySecretFile = auth, secret
		b, err := c.Build()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(b.Warnings, "\n")
	}
	if got := build(); strings.Contains(got, "readable by every user") {
		t.Errorf("private files: warnings %q", got)
	}
	for _, f := range []string{auth, secret} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := build()
	for _, want := range []string{"mirror-auth-file " + auth + " is readable by every user", "affinity-secret-file " + secret + " is readable by every user"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings %q, want %q", got, want)
		}
	}
}
