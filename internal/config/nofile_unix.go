//go:build unix

package config

import "syscall"

// nofile is the process's open-file limit (1024 when unknown).
func nofile() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 1024
	}
	return uint64(r.Cur)
}
