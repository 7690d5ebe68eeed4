package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noNetlinkChild marks the re-executed test binary that runs check with
// socket(AF_NETLINK) refused.
const noNetlinkChild = "NEXMUXTEST_NO_NETLINK"

// A sandbox that refuses AF_NETLINK sockets (systemd's
// RestrictAddressFamilies without it, a strict seccomp profile) keeps
// nexmux from reading this host's addresses, so it cannot tell a backend at
// one of them on its listener's port from another host's. check must say
// so: passing it silently, serve would start a connection loop the README
// says it refuses.
func TestUnreadableHostAddressesWarned(t *testing.T) {
	if os.Getenv(noNetlinkChild) == "1" {
		if err := denyNetlink(); err != nil {
			os.Stdout.WriteString("seccomp unavailable: " + err.Error() + "\n")
			return
		}
		crt, key := certFiles(t)
		_, errs, code := run(t, "check", "--cert", crt, "--key", key,
			"--passthrough", "x.example.com=192.0.2.55:8443")
		os.Stdout.WriteString(errs)
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		return
	}
	if _, ok := seccompArch[runtime.GOARCH]; !ok {
		t.Skipf("no seccomp filter written for %s", runtime.GOARCH)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnreadableHostAddressesWarned$", "-test.count=1")
	cmd.Env = append(os.Environ(), noNetlinkChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check with AF_NETLINK refused: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "seccomp unavailable") {
		t.Skip(string(out))
	}
	if !strings.Contains(string(out), "passthrough x.example.com=192.0.2.55:8443") || !strings.Contains(string(out), "this host's addresses could not be read") {
		t.Errorf("check passed a backend on the listener's port it could not place, without a word:\n%s", out)
	}
	// With the addresses readable there is nothing to say: 192.0.2.55 is
	// TEST-NET-1, no address of a test machine.
	crt, key := certFiles(t)
	if _, errs, code := run(t, "check", "--cert", crt, "--key", key, "--passthrough", "x.example.com=192.0.2.55:8443"); code != 0 || strings.Contains(errs, "could not be read") {
		t.Errorf("addresses readable: exit %d\n%s", code, errs)
	}
}

// seccompArch is each architecture's AUDIT_ARCH value, which a filter must
// check before it reads a syscall number.
var seccompArch = map[string]uint32{"amd64": 0xc000003e, "arm64": 0xc00000b7}

// denyNetlink makes socket(AF_NETLINK, ...) fail with EAFNOSUPPORT in every
// thread of this process, as systemd's RestrictAddressFamilies does.
func denyNetlink() error {
	f := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 5, K: seccompArch[runtime.GOARCH]},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // syscall number
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 3, K: unix.SYS_SOCKET},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 16}, // first argument's low word
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 1, K: unix.AF_NETLINK},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return e
	}
	return nil
}
