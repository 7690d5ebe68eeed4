//go:build !unix

package main

import "errors"

// mkfifo: Windows has no named pipes in the file system; the test skips.
func mkfifo(string) error { return errors.New("no fifos here") }
