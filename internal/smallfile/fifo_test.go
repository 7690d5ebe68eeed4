//go:build unix

package smallfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A FIFO named by mistake must fail a read, not hang it: a reload reads
// under the reload lock, and SIGTERM's drain waits for the file watcher
// that would wait for that lock. Without a writer, the open itself blocked.
func TestReadFIFODoesNotBlock(t *testing.T) {
	defer func(d time.Duration) { pipeTimeout = d }(pipeTimeout)
	pipeTimeout = 500 * time.Millisecond
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip(err)
	}
	read := func(what string, unblock func()) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			_, err := Read(p)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s: read as a file", what)
			}
		case <-time.After(5 * time.Second):
			unblock()
			t.Fatalf("%s: the read blocked", what)
		}
	}
	read("a FIFO without a writer", func() {
		if w, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	// A writer that holds the FIFO open and never writes.
	w, err := os.OpenFile(p, os.O_RDWR, 0) // O_RDWR opens without a reader
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	read("a FIFO whose writer stalls", func() { w.Close() })
	// A writer that writes and closes (a shell's <(...)) is read.
	w.Close()
	go func() {
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			w.Write([]byte("user:password\n"))
			w.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if b, err := Read(p); err != nil || string(b) != "user:password\n" {
		t.Fatalf("a FIFO that is written: %q, %v", b, err)
	}
}
