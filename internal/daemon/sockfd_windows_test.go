package daemon_test

import "syscall"

// sockFD: see sockfd_unix_test.go.
type sockFD = syscall.Handle
