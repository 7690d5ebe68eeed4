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
