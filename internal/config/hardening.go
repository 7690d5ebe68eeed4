package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// checkHardening validates the issue-17 settings (limits, header hygiene),
// appending every problem to errs.
func (c *Config) checkHardening(errs *multierror.Error) *multierror.Error {
	for _, h := range c.StripHeader {
		if !isToken(h) {
			errs = multierror.Append(errs, fmt.Errorf("strip-header %q: not a header name", h))
		}
	}
	return errs
}

// isToken reports an RFC 9110 token (a header field name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}
