package daemon_test

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/daemon"
)

// reloadStack starts a stack whose configuration file is file (written
// with content first) and whose log lines land in the returned buffer.
func reloadStack(t *testing.T, file, content string) (*stack.Stack, *logBuffer) {
	t.Helper()
	writeFile(t, file, content)
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: fastWatch}, ConfigFile: file,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nexmux log:\n%s", logs.String())
		}
	})
	return st, logs
}

// The kubelet may update a ConfigMap before the Secret it names: a
// configuration naming a certificate that is not there yet is refused, and
// the reload is retried when the certificate turns up, with no SIGHUP and
// no further edit of the configuration.
func TestRefusedReloadRetriedWhenMissingFileAppears(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "nexmux.yaml")
	st, logs := reloadStack(t, file, "route: [\"team-a.nexmux.test=team-a\"]\n")

	// In a directory that does not exist yet either.
	crt, key := filepath.Join(dir, "secret", "other.crt"), filepath.Join(dir, "secret", "other.key")
	stackCrt, stackKey := filepath.Join(st.CertDir, "server.crt"), filepath.Join(st.CertDir, "server.key")
	writeFile(t, file, fmt.Sprintf("route: [\"team-a.nexmux.test=team-a\", \"x.other.test=team-b\"]\ncert: [%q, %q]\nkey: [%q, %q]\n",
		stackCrt, crt, stackKey, key))
	waitLog(t, logs, "reload refused", "no such file")

	// Nothing changes, nothing is retried.
	time.Sleep(10 * fastWatch)
	if n := len(logLines(logs, "reload refused")); n != 1 {
		t.Fatalf("%d refused reloads while no file changed, want 1", n)
	}

	if err := os.Mkdir(filepath.Join(dir, "secret"), 0o755); err != nil {
		t.Fatal(err)
	}
	pair, err := st.CA.Issue("*.other.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "msg=reloaded")
	c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "x.other.test", RootCAs: st.Pool()})
	if err != nil {
		t.Fatalf("x.other.test after the certificate turned up: %v", err)
	}
	c.Close()

	// The new configuration's files are the watched ones now: renewing
	// the new certificate in place reloads again.
	renewed, err := st.CA.Issue("*.other.test", "renewed.other.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := renewed.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewed certificate", func() bool {
		c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "x.other.test", RootCAs: st.Pool()})
		if err != nil {
			return false
		}
		defer c.Close()
		return slices.Contains(c.ConnectionState().PeerCertificates[0].DNSNames, "renewed.other.test")
	})
}
