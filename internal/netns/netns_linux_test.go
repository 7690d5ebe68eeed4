package netns

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// threadNS is the namespace of the thread running the caller, pinned for
// the read.
func threadNS(t *testing.T) uint64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return inode(t, "/proc/thread-self/ns/net")
}

// skipUnlessRequired skips, or fails where NEXMUX_REQUIRE_NETNS is set
// (CI), as the other namespace tests do: there a missing tool must not
// pass quietly.
func skipUnlessRequired(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("NEXMUX_REQUIRE_NETNS") != "" {
		t.Fatalf("NEXMUX_REQUIRE_NETNS is set but %s", msg)
	}
	t.Skip(msg)
}

func TestNetnsDo(t *testing.T) {
	if os.Geteuid() != 0 {
		skipUnlessRequired(t, "needs root: creates a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipUnlessRequired(t, "needs ip (iproute2)")
	}
	name := fmt.Sprintf("nxt-%d", os.Getpid())
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	path := "/run/netns/" + name
	home, target := threadNS(t), inode(t, path)
	if home == target {
		t.Fatal("test namespace is the test's own")
	}

	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var in uint64
			err := Do(path, func() error {
				var st unix.Stat_t
				if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
					return err
				}
				in = st.Ino
				return nil
			})
			if err != nil || in != target {
				t.Errorf("inside Do: namespace %d (err %v), want %d", in, err, target)
			}
		}()
	}
	wg.Wait()
	// Every thread the runtime hands out again is back home.
	for i := 0; i < 200; i++ {
		if ns := threadNS(t); ns != home {
			t.Fatalf("a thread was left in namespace %d", ns)
		}
		runtime.Gosched()
	}

	if err := Do(path, func() error { runtime.Goexit(); return nil }); err == nil || !strings.Contains(err.Error(), "did not return") {
		t.Fatalf("Goexit inside Do: %v", err)
	}
	if err := Do(path+"-missing", func() error { return nil }); err == nil {
		t.Fatal("Do with a missing namespace succeeded")
	}
}
