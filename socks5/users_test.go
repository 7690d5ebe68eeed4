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
		{"last line wins", "ci:one\nci:two\n", map[string]string{"ci": "two"}, ""},
		{"no colon", "ci:s3cret\nbob\n", nil, "socks5-auth-file users line 2: want user:password"},
		{"empty user", ":pw\n", nil, "socks5-auth-file users line 1: want user:password"},
		{"empty password", "ci:\n", nil, "socks5-auth-file users line 1: want user:password"},
		{"user too long", long + ":pw\n", nil, "socks5-auth-file users line 1: SOCKS5 allows at most 255 bytes per user and password"},
		{"password too long", "ci:" + long + "\n", nil, "socks5-auth-file users line 1: SOCKS5 allows at most 255 bytes per user and password"},
		{"only comments", "# nobody yet\n", nil, "socks5-auth-file users: no user:password line"},
		{"empty", "", nil, "socks5-auth-file users: no user:password line"},
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
	if got, err := LoadCredentials(file); err != nil || got["ci"] != "s3cret" {
		t.Fatalf("got %v, %v", got, err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := LoadCredentials(missing); err == nil || !strings.HasPrefix(err.Error(), "socks5-auth-file: ") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file: %v", err)
	}
}
