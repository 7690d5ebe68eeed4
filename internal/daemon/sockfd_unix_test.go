//go:build unix

package daemon_test

// sockFD is what syscall's setsockopt takes for a raw socket: an int here,
// a Handle on Windows (sockfd_windows_test.go), so go vet builds there too.
type sockFD = int
