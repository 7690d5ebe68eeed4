package testnet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// FreePort's ports are free, distinct, and below the ephemeral range that
// ":0" listeners draw from.
func TestFreePort(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if p >= low || p < 1024 || seen[p] {
			t.Fatalf("port %d: want a new one in 1024-%d", p, low-1)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		ln.Close()
	}
	// A port taken is skipped.
	p := FreePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
	if err == nil {
		defer ln.Close()
		if q := FreePort(t); q == p+1 {
			t.Fatalf("FreePort handed out %d, which is listened on", q)
		}
	}
}

// Two test processes (go test runs packages in parallel) that start at the
// same port never both get it: FreePort's port stays claimed until the test
// that took it ends, though nothing listens on it yet.
func TestFreePortAcrossProcesses(t *testing.T) {
	low := ephemeralLow()
	start := max(low-12000, 1024) + 4000
	if os.Getenv("TESTNET_FREEPORT_CHILD") == "1" {
		portMu.Lock()
		portNext = start
		portMu.Unlock()
		fmt.Println(FreePort(t))
		io.Copy(io.Discard, os.Stdin) // hold the port until the parent is done
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFreePortAcrossProcesses$")
	cmd.Env = append(os.Environ(), "TESTNET_FREEPORT_CHILD=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	theirs, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("child printed %q", line)
	}
	portMu.Lock()
	saved := portNext
	portNext = start
	portMu.Unlock()
	defer func() { portMu.Lock(); portNext = saved; portMu.Unlock() }()
	if ours := FreePort(t); ours == theirs {
		t.Fatalf("both processes were handed port %d", ours)
	}
}
