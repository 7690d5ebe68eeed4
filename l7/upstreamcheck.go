package l7

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// CheckUpstreams lists every problem of the --upstream base URLs at once
// (errors.Join, one error each), or returns nil. ParseUpstreams calls it
// first, so its own checks only see URLs that pass.
func CheckUpstreams(raw []string) error {
	if len(raw) == 0 {
		return errors.New("upstream: at least one Nexus base URL is needed")
	}
	var errs []error
	var first *url.URL
	var firstCtx string
	for _, s := range raw {
		p, err := url.Parse(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream %q: %v", s, err))
			continue
		}
		var probs []string
		if p.Scheme != "http" && p.Scheme != "https" {
			probs = append(probs, "scheme must be http or https")
		}
		if p.Hostname() == "" {
			probs = append(probs, "no host")
		}
		if p.RawQuery != "" || p.Fragment != "" || p.User != nil || p.ForceQuery {
			probs = append(probs, "no query, fragment or credentials allowed")
		}
		if why := badContextPath(p); why != "" {
			probs = append(probs, why)
		}
		if len(probs) > 0 {
			errs = append(errs, fmt.Errorf("upstream %q: %s", s, strings.Join(probs, "; ")))
			continue
		}
		ctx := strings.TrimRight(p.EscapedPath(), "/")
		if first == nil {
			first, firstCtx = p, ctx
		} else if ctx != firstCtx || p.Scheme != first.Scheme {
			errs = append(errs, fmt.Errorf("upstream %q: every node must have the scheme and context path of %q", s, first))
		}
	}
	return errors.Join(errs...)
}

// badContextPath refuses a context path Nexus and nexmux would read
// differently: dot segments ("/nexus/../service" reaches the REST API),
// encoded slashes or dots, and empty segments.
func badContextPath(p *url.URL) string {
	raw := strings.TrimRight(p.EscapedPath(), "/")
	if raw == "" {
		return ""
	}
	for _, seg := range strings.Split(strings.TrimPrefix(raw, "/"), "/") {
		dec, err := url.PathUnescape(seg)
		switch {
		case err != nil:
			return "context path: " + err.Error()
		case dec == "." || dec == "..":
			return "context path " + raw + " has a dot segment"
		case dec == "":
			return "context path " + raw + " has an empty segment"
		case dec != seg && strings.ContainsAny(dec, "/.;\\"):
			return "context path " + raw + " encodes a separator"
		case strings.Contains(dec, ";"):
			return "context path " + raw + " has a ';' parameter"
		}
	}
	return ""
}
