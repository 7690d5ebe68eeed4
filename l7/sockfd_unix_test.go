//go:build unix

package l7

// sockFD is what syscall's setsockopt takes for a raw socket: an int here,
// a Handle on Windows (sockfd_windows_test.go), so go vet builds there too.
type sockFD = int
