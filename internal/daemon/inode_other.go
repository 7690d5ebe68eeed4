//go:build !unix

package daemon

import "os"

// inode: Windows's file info carries no inode; size and mtime alone tell
// a watched file's changes there.
func inode(os.FileInfo) string { return "" }
