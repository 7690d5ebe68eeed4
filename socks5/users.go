package socks5

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/nexmux/nexmux/internal/errlist"
	"github.com/nexmux/nexmux/internal/smallfile"
)

// LoadCredentials reads a --socks5-auth-file (see ParseCredentials). A
// missing or empty file means nobody may log in (an empty map, and a
// warning): removing the file, or its last line, is how users are revoked.
// warnings also flag a file others may read.
func LoadCredentials(path string) (creds map[string]string, warnings []string, err error) {
	data, err := smallfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, []string{fmt.Sprintf("socks5-auth-file %s is missing: nobody may log in to the SOCKS5 ingress", path)}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("socks5-auth-file: %v", err)
	}
	if w := smallfile.OthersMayRead("socks5-auth-file", path); w != "" {
		warnings = append(warnings, w)
	}
	creds, err = ParseCredentials(path, data)
	if err == nil && len(creds) == 0 {
		warnings = append(warnings, fmt.Sprintf("socks5-auth-file %s holds no user: nobody may log in to the SOCKS5 ingress", path))
	}
	return creds, warnings, err
}

// ParseCredentials parses "user:password" lines (blank lines and #
// comments ignored) into user -> password, listing every bad line and
// every user given twice. No line at all is an empty map: nobody. name is
// the file's name, for error messages.
func ParseCredentials(name string, data []byte) (map[string]string, error) {
	creds := map[string]string{}
	first := map[string]int{}
	var errs []error
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		u, p, ok := strings.Cut(line, ":")
		if !ok || u == "" || p == "" {
			errs = append(errs, fmt.Errorf("socks5-auth-file %s line %d: want user:password", name, i+1))
			continue
		}
		if len(u) > 255 || len(p) > 255 {
			errs = append(errs, fmt.Errorf("socks5-auth-file %s line %d: SOCKS5 allows at most 255 bytes per user and password", name, i+1))
			continue
		}
		if l, dup := first[u]; dup {
			errs = append(errs, fmt.Errorf("socks5-auth-file %s line %d: user %q again (first on line %d)", name, i+1, u, l))
			continue
		}
		first[u] = i + 1
		creds[u] = p
	}
	if len(errs) > 0 {
		return nil, errlist.Join(errs...)
	}
	return creds, nil
}
