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

// CheckUser is the --user check: HTTP Basic authentication (RFC 7617)
// ends the user name at its first ':', so a user with one would be sent
// as its part before the colon with the rest glued to the password, and
// come back as Nexus's 401 "check --user and --password-file".
func CheckUser(user string) error {
	if strings.Contains(user, ":") {
		return fmt.Errorf("user %q: HTTP Basic authentication cannot carry a ':' in the user name (Nexus would read %q, the rest as part of the password)", user, user[:strings.Index(user, ":")])
	}
	return nil
}
