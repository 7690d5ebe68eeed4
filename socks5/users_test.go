package socks5

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCredentials(t *testing.T) {
	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name    string
		data    string
		want    map[string]string
		wantErr string
	}{
		{"users, comments, blank lines, CRLF", "# ci users\n\nci:s3cret\r\n  bob:a:b  \n", map[string]string{"ci": "s3cret", "bob": "a:b"}, ""},
		{"duplicate user", "ci:one\nbob:x\nci:two\n", nil, `socks5-auth-file users line 3: user "ci" again (first on line 1)`},
		{"no colon", "ci:s3cret\nbob\n", nil, "socks5-auth-file users line 2: want user:password"},
		{"empty user", ":pw\n", nil, "socks5-auth-file users line 1: want user:password"},
		{"empty password", "ci:\n", nil, "socks5-auth-file users line 1: want user:password"},
		{"user too long", long + ":pw\n", nil, "socks5-auth-file users line 1: SOCKS5 allows at most 255 bytes per user and password"},
		{"password too long", "ci:" + long + "\n", nil, "socks5-auth-file users line 1: SOCKS5 allows at most 255 bytes per user and password"},
		{"only comments: nobody", "# nobody yet\n", map[string]string{}, ""},
		{"empty: nobody", "", map[string]string{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCredentials("users", []byte(tc.data))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "socks.auth")
	if err := os.WriteFile(file, []byte("ci:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, warn, err := LoadCredentials(file); err != nil || got["ci"] != "s3cret" || len(warn) != 0 {
		t.Fatalf("got %v, %v, %v", got, warn, err)
	}
	// Missing or empty: nobody, with a warning; readable by all: a warning.
	missing := filepath.Join(dir, "missing")
	if got, warn, err := LoadCredentials(missing); err != nil || len(got) != 0 || len(warn) != 1 || !strings.Contains(warn[0], "nobody") {
		t.Fatalf("missing file: %v %q %v", got, warn, err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o644)
	got, warn, err := LoadCredentials(file)
	if err != nil || len(got) != 0 || len(warn) != 2 || !strings.Contains(strings.Join(warn, "\n"), "readable by every user") {
		t.Fatalf("empty, world-readable file: %v %q %v", got, warn, err)
	}
	if err := os.WriteFile(file, []byte("a:1\nb\na:2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadCredentials(file); err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("every problem at once: %v", err)
	}
}
