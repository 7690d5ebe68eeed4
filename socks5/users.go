package socks5

import (
	"fmt"
	"os"
	"strings"
)

// LoadCredentials reads a --socks5-auth-file (see ParseCredentials).
func LoadCredentials(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("socks5-auth-file: %v", err)
	}
	return ParseCredentials(path, data)
}

// ParseCredentials parses "user:password" lines (blank lines and #
// comments ignored) into user -> password. name is the file's name, for
// error messages.
func ParseCredentials(name string, data []byte) (map[string]string, error) {
	creds := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		u, p, ok := strings.Cut(line, ":")
		if !ok || u == "" || p == "" {
			return nil, fmt.Errorf("socks5-auth-file %s line %d: want user:password", name, i+1)
		}
		if len(u) > 255 || len(p) > 255 {
			return nil, fmt.Errorf("socks5-auth-file %s line %d: SOCKS5 allows at most 255 bytes per user and password", name, i+1)
		}
		creds[u] = p
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("socks5-auth-file %s: no user:password line", name)
	}
	return creds, nil
}
