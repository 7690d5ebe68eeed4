// Package smallfile reads the files a configuration names (the config
// file, auth files, secrets, certificates and keys), bounded: each is read
// again on every reload while nexmux serves, and a path that names a device
// (/dev/zero) or a huge file by mistake must fail that reload, not grow the
// process until the kernel kills it.
package smallfile

import (
	"fmt"
	"io"
	"os"
)

// Max is the largest file Read accepts: 16 MiB holds a config of some
// 100,000 routes, or as many SOCKS5 users, many times over.
const Max = 16 << 20

// Read returns the content of the file at path, or an error when it holds
// more than Max bytes.
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, Max+1))
	if err != nil {
		return nil, err
	}
	if len(b) > Max {
		return nil, fmt.Errorf("%s: larger than %d MiB, not a file nexmux reads", path, Max>>20)
	}
	return b, nil
}
