// Package errlist is how nexmux reports every problem of a configuration at
// once: a *multierror.Error printed one problem per line, which is what users
// read and scripts grep for.
package errlist

import (
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
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Join is Err over errs (nil ones skipped), for code that gathers a slice.
func Join(errs ...error) error {
	var all *multierror.Error
	for _, err := range errs {
		all = Append(all, err)
	}
	return Err(all)
}
