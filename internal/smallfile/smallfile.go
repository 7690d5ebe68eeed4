// Package smallfile reads the files a configuration names (the config
// file, auth files, secrets, certificates and keys), bounded: each is read
// again on every reload while nexmux serves, and a path that names a device
// (/dev/zero), a FIFO or a huge file by mistake must fail that reload, not
// grow the process until the kernel kills it or hold the reload forever.
package smallfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Max is the largest file Read accepts: 16 MiB holds a config of some
// 100,000 routes, or as many SOCKS5 users, many times over.
const Max = 16 << 20

// pipeTimeout bounds the read of a FIFO (a shell's <(...) at start): a
// reload reads under the reload lock, which a writer that never writes
// would hold for ever.
var pipeTimeout = 10 * time.Second

// Read returns the content of the file at path, or an error when it holds
// more than Max bytes, or is a FIFO without a writer or whose writer does
// not finish within pipeTimeout.
func Read(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO does not wait for a writer, and its reads
	// go through the poller, so a deadline bounds them. Regular files and
	// devices such as /dev/zero read as before.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	fifo := fi.Mode()&fs.ModeNamedPipe != 0
	if fifo {
		if err := f.SetReadDeadline(time.Now().Add(pipeTimeout)); err != nil {
			return nil, fmt.Errorf("%s: a FIFO that cannot be read with a deadline: %w", path, err)
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, Max+1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("%s: a FIFO whose writer did not finish within %v", path, pipeTimeout)
	}
	if err != nil {
		return nil, err
	}
	if fifo && len(b) == 0 {
		// No writer: a read returns end of file at once.
		return nil, fmt.Errorf("%s: a FIFO with nothing to read (no writer)", path)
	}
	if len(b) > Max {
		return nil, fmt.Errorf("%s: larger than %d MiB, not a file nexmux reads", path, Max>>20)
	}
	return b, nil
}

// OthersMayRead is the warning for a secret file (what names it, flag, and
// its path) that every user of the host may read, or "".
func OthersMayRead(flag, path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s is readable by every user (mode %#o): chmod o-r", flag, path, fi.Mode().Perm())
}
