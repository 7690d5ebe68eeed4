package daemon_test

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// wildcardPair writes a certificate for *.nexmux.test, issued by a new CA
// named caName, to tls.crt and tls.key in dir.
func wildcardPair(t *testing.T, dir, caName string) (ca *certs.CA, crt, key string) {
	t.Helper()
	ca, err := certs.NewCA(caName)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("*.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	crt, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := pair.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	return ca, crt, key
}

// watchedSetup is a configuration file routing a.nexmux.test (b too with
// both), a certificate for both names, and a read of the file over them.
func watchedSetup(t *testing.T) (file, one, both string, pool func() *tls.Config, read func() (*config.Runtime, error)) {
	t.Helper()
	dir := t.TempDir()
	ca, crt, key := wildcardPair(t, dir, "watch state test")
	c := config.Defaults()
	c.Listen = "127.0.0.1:0"
	c.Upstream = []string{"http://127.0.0.1:9"}
	c.Cert, c.Key = []string{crt}, []string{key}
	file = filepath.Join(dir, "nexmux.yaml")
	// The same length, so that an in-place rewrite keeps the size.
	one = "route: [\"a.nexmux.test=team-a\"]                        \n"
	both = "route: [\"a.nexmux.test=team-a\", \"b.nexmux.test=team-b\"]\n"
	if len(one) != len(both) {
		t.Fatalf("test contents differ in length: %d, %d", len(one), len(both))
	}
	return file, one, both, func() *tls.Config { return &tls.Config{ServerName: "b.nexmux.test", RootCAs: ca.Pool()} },
		stack.Builder(*c, file)
}

// routesB is whether d serves b.nexmux.test (an unknown name fails the
// handshake).
func routesB(d *daemon.Daemon, cfg *tls.Config) bool {
	c, err := tls.Dial("tcp", d.Addr("listen").String(), cfg)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// A configuration file changed while nexmux starts, between the start's
// read of it and the watcher's first look, is seen: the watcher starts
// from the files' state before the read that is served, not from their
// state at Start. Before, the change went unseen until the file changed
// again. The change lands after the first or the second read.
func TestStartSeesFileChangedWhileStarting(t *testing.T) {
	for _, after := range []int{1, 2} {
		t.Run(fmt.Sprintf("after read %d", after), func(t *testing.T) {
			file, one, both, tlsCfg, read := watchedSetup(t)
			if err := os.WriteFile(file, []byte(one), 0o644); err != nil {
				t.Fatal(err)
			}
			reads := 0
			b, states, err := daemon.ReadConfig(func() (*config.Runtime, error) {
				rt, err := read()
				if reads++; reads == after {
					writeFile(t, file, both)
				}
				return rt, err
			})
			if err != nil {
				t.Fatal(err)
			}
			d, err := daemon.New(b, daemon.Options{Logger: discardLogger(), WatchInterval: time.Hour, FileStates: states,
				Reload: read})
			if err != nil {
				t.Fatal(err)
			}
			serveDaemon(t, d)
			for range 3 {
				d.PollWatched()
			}
			if !routesB(d, tlsCfg()) {
				t.Fatalf("b.nexmux.test is not served: the file's change after read %d of %d was never seen", after, reads)
			}
		})
	}
}

// A watched file rewritten in place to the same size, with its
// modification time put back (a restore, `cp -p`, `touch -r`), is a
// change: its ctime moved.
func TestWatchSeesInPlaceRewriteWithMtimeRestored(t *testing.T) {
	file, one, both, tlsCfg, read := watchedSetup(t)
	if err := os.WriteFile(file, []byte(one), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := read()
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(b, daemon.Options{Logger: discardLogger(), WatchInterval: time.Hour, Reload: read})
	if err != nil {
		t.Fatal(err)
	}
	serveDaemon(t, d)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(both), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(file, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		d.PollWatched()
	}
	if !routesB(d, tlsCfg()) {
		t.Fatal("b.nexmux.test is not served: an in-place rewrite of the same size with its mtime restored was not seen")
	}
}

// A restart-only setting whose new value is invalid is refused for that
// value alone: the value in effect is not replaced, so the refusal must not
// also say the setting changed and needs a restart, which would send the
// operator to restart for an edit that never parsed.
func TestReloadInvalidValueIsNoRestartChange(t *testing.T) {
	dir := t.TempDir()
	_, crt, key := wildcardPair(t, dir, "invalid value reload test")
	base := config.Defaults()
	base.Listen = "127.0.0.1:0"
	base.Upstream = []string{"http://127.0.0.1:9"}
	base.Cert, base.Key = []string{crt}, []string{key}
	file := filepath.Join(dir, "nexmux.yaml")
	writeFile(t, file, "route: [\"a.nexmux.test=team-a\"]\nidle-timeout: 3m\n")
	// As nexmux serve reads it: a file with a bad value comes back with
	// its valid keys applied, beside the error.
	read := func() (*config.Runtime, error) {
		c := *base
		if err := c.ApplyFile(file); err != nil {
			return &config.Runtime{Config: &c}, err
		}
		c.File = file
		return c.Build()
	}
	b, err := read()
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(b, daemon.Options{Logger: discardLogger(), WatchInterval: time.Hour, Reload: read})
	if err != nil {
		t.Fatal(err)
	}
	serveDaemon(t, d)
	writeFile(t, file, "route: [\"a.nexmux.test=team-a\"]\nidle-timeout: 5\n")
	err = d.Reload()
	if err == nil || !strings.Contains(err.Error(), `idle-timeout: line 2: "5"`) {
		t.Fatalf("reload of an invalid idle-timeout: %v", err)
	}
	if strings.Contains(err.Error(), "need a restart") {
		t.Errorf("refusal of an invalid value also says a restart is needed:\n%s", err)
	}
}
