// Package logtext bounds what a log line or a message holds of text a
// client or a peer chose: a path, a method, a quoted answer, an error.
package logtext

import (
	"strconv"
	"unicode/utf8"
)

// Max is the longest value a log line holds whole. Registry paths are a
// few hundred bytes; a client may send 64 KiB of path, and net/http's
// error for an answer that is no HTTP quotes its whole first line, while
// log pipelines split lines at 16 KiB (Docker's json-file driver, the CRI
// log format), which breaks a JSON line in two.
const Max = 1024

// Bound is s as a log line holds it.
func Bound(s string) string { return Shorten(s, Max) }

// Shorten is s whole up to max bytes, else its first max bytes (cut
// before a character that would be split) and its length.
func Shorten(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for back := 0; back < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); back++ {
		cut--
	}
	return s[:cut] + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
