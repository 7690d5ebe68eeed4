package discover

import (
	"fmt"
	"strings"

	"github.com/nexmux/nexmux/internal/smallfile"
)

// ReadPassword reads --password-file: the password, with one line ending
// (\n or \r\n) removed, as --mirror-auth-file's line. Blanks are kept:
// Nexus compares the password byte for byte. A second line or an empty
// password is an error: sent, either would come back as Nexus's 401.
func ReadPassword(file string) (string, error) {
	data, err := smallfile.Read(file) // bounded: a FIFO or a device by mistake fails, not hangs
	if err != nil {
		return "", fmt.Errorf("password-file: %v", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	switch {
	case strings.ContainsAny(pw, "\r\n"):
		return "", fmt.Errorf("password-file %s: more than one line; want the password alone on one line", file)
	case pw == "":
		return "", fmt.Errorf("password-file %s: empty; want the password on one line", file)
	}
	return pw, nil
}
