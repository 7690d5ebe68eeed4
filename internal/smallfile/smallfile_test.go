package smallfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/internal/smallfile"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("user:password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := smallfile.Read(small); err != nil || string(b) != "user:password\n" {
		t.Fatalf("small file: %q, %v", b, err)
	}
	exact := filepath.Join(dir, "exact")
	if err := os.WriteFile(exact, make([]byte, smallfile.Max), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := smallfile.Read(exact); err != nil || len(b) != smallfile.Max {
		t.Fatalf("a file of exactly Max bytes: %d bytes, %v", len(b), err)
	}
	if _, err := smallfile.Read("/dev/zero"); err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Fatalf("/dev/zero: %v, want refused as too large", err)
	}
	if _, err := smallfile.Read(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v, want not-exist", err)
	}
}
