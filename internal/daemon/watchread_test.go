package daemon_test

import (
	"crypto/tls"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// A certificate that a reload's configuration names for the first time,
// and that turns up just after the reload read it (the kubelet mounting
// the Secret a ConfigMap names), retries the reload: the watch must not
// take the file as it is after the read for the state that was read, or
// the refused configuration is never retried.
func TestReloadRetriedWhenNewFileTurnsUpWhileRead(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("watch test")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	pair, err := ca.Issue("a.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	late, err := ca.Issue("b.test")
	if err != nil {
		t.Fatal(err)
	}
	lateCrt, lateKey := filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key")

	c := config.Defaults()
	c.Listen = "127.0.0.1:0"
	c.Upstream = []string{"http://127.0.0.1:9"}
	c.Route = []string{"a.test=team-a"}
	c.Cert, c.Key = []string{crt}, []string{key}
	b, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	next := *c
	next.Route = slices.Concat(c.Route, []string{"b.test=team-b"})
	next.Cert, next.Key = slices.Concat(c.Cert, []string{lateCrt}), slices.Concat(c.Key, []string{lateKey})
	var reads atomic.Int32
	d, err := daemon.New(b, daemon.Options{Logger: discardLogger(), WatchInterval: fastWatch,
		Reload: func() (*config.Runtime, error) {
			rt, err := next.Build()
			if reads.Add(1) == 1 {
				// Mounted just after this read saw it missing.
				if err := late.Write(lateCrt, lateKey); err != nil {
					t.Error(err)
				}
			}
			if err != nil {
				n := next
				return &config.Runtime{Config: &n}, err
			}
			return rt, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	serveDaemon(t, d)
	_ = d.Reload()
	waitFor(t, "b.test served once its certificate turned up", func() bool {
		conn, err := tls.Dial("tcp", d.Addr("listen").String(), &tls.Config{ServerName: "b.test", RootCAs: ca.Pool()})
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
}
