//go:build unix

package daemon

import (
	"os"
	"strconv"
	"syscall"
)

// inode tells a replaced file from a rewritten one with the same size and
// modification time (a secret swapped in by a symlink flip), and the ctime
// a rewrite in place whose mtime was put back (cp -p, touch -r, a restore):
// no one can set it.
func inode(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.FormatUint(st.Ino, 10) + ctime(st)
	}
	return ""
}
