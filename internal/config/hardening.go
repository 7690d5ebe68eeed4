package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// DefaultMaxRequestsPerClient bounds one client address's requests in
// flight: far above what docker, containerd or BuildKit run at once (a few
// layers per image), far below Jetty's 400 threads, and room for a CI
// fleet behind one NAT address.
const DefaultMaxRequestsPerClient = 128

// checkHardening validates the issue-17 settings (limits, header hygiene),
// appending every problem to errs.
func (c *Config) checkHardening(errs *multierror.Error) *multierror.Error {
	for _, h := range c.StripHeader {
		if !isToken(h) {
			errs = multierror.Append(errs, fmt.Errorf("strip-header %q: not a header name", h))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max-requests-per-client", c.MaxRequestsPerClient}} {
		if n.v < 0 {
			errs = multierror.Append(errs, fmt.Errorf("%s %d: must not be negative", n.name, n.v))
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
