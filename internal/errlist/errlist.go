// Package errlist is how nexmux reports every problem of a configuration at
// once: a *multierror.Error printed one problem per line, which is what users
// read and scripts grep for.
package errlist

import (
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// Append adds err to errs, one entry per problem: an error that joins
// several (errors.Join, *multierror.Error) is taken apart.
func Append(errs *multierror.Error, err error) *multierror.Error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return multierror.Append(errs, j.Unwrap()...)
	}
	return multierror.Append(errs, err)
}

// Err returns errs printed one problem per line, or nil when it holds none.
func Err(errs *multierror.Error) error {
	if errs.ErrorOrNil() == nil {
		return nil
	}
	errs.ErrorFormat = Format
	return errs
}

// Format is a multierror.ErrorFormatFunc: one problem per line.
func Format(es []error) string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = OneLine(e.Error())
	}
	return strings.Join(lines, "\n")
}

// OneLine is a problem (or a warning) with its control characters
// escaped as Go writes them: a file name or value holding a line break (most problems quote
// theirs, but an os error names its file as it is) would otherwise start
// a line that reads like another problem or a log line, and an escape
// sequence would drive the terminal check prints on.
func OneLine(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }

// Join is Err over errs (nil ones skipped), for code that gathers a slice.
func Join(errs ...error) error {
	var all *multierror.Error
	for _, err := range errs {
		all = Append(all, err)
	}
	return Err(all)
}
