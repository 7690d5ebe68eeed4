package daemon_test

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// Writing out a restart-only setting's default, or another spelling of the
// running value, is no change: the reload goes through. A real change is
// refused, reported in the same refusal as an invalid value, and a changed
// context path is named with its old and new value.
func TestReloadComparesEffectiveValues(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "nexmux.yaml")
	base := "route: [\"team-a.nexmux.test=team-a\"]\n"
	st, logs := reloadStack(t, file, base)
	if got := get(st, "team-b", "/v2/"); got != 0 {
		t.Fatalf("team-b before the reload: %d", got)
	}

	// The stack runs with these unset (zero): their defaults apply.
	defaults := "idle-timeout: 2m\nhandshake-timeout: 10s\nheader-timeout: 30s\npassthrough-idle-timeout: 5m\n" +
		"health-interval: 2s\nupstream-max-conns: 200\nplain-http-scheme: http\nlog-level: INFO\nlog-format: text\n"
	writeFile(t, file, "route: [\"team-a.nexmux.test=team-a\", \"team-b.nexmux.test=team-b\"]\n"+defaults)
	waitFor(t, "team-b after the reload", func() bool { return get(st, "team-b", "/v2/") == http.StatusUnauthorized })
	if ls := logLines(logs, "reload refused"); len(ls) > 0 {
		t.Fatalf("a reload was refused: %s", ls[0])
	}

	// A real change of a restart-only setting, an invalid value and
	// another context path: one refusal says all three.
	writeFile(t, file, base+"idle-timeout: 1m\npassthrough-proxy-protocol: v3\nupstream: [\""+st.NexusURL+"/nexus\"]\n")
	line := waitLog(t, logs, "reload refused")
	for _, want := range []string{
		`passthrough-proxy-protocol \"v3\": want v1 or v2`,
		"need a restart: idle-timeout",
		"running http without a context path, new http with context path /nexus",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal without %q: %s", want, line)
		}
	}
	if got := get(st, "team-b", "/v2/"); got != http.StatusUnauthorized {
		t.Fatalf("after a refused reload the previous configuration must serve: %d", got)
	}
}

// A watched file is reloaded only once it has stayed the same for a poll
// interval: one caught while being written may parse, with routes
// missing, and applying it would revoke their connections.
func TestWatchedFileReloadedOnceSettled(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	writeFile(t, file, "route: [\"team-a.nexmux.test=team-a\"]\n")
	logs := &logBuffer{}
	// The test polls; the daemon's own watch never comes round.
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: time.Hour}, ConfigFile: file,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	reloads := func() int { return len(logLines(logs, "msg=reloaded")) }

	writeFile(t, file, "route:\n  - team-a.nexmux.test=team-a\n")
	st.Daemon.PollWatched()
	writeFile(t, file, "route:\n  - team-a.nexmux.test=team-a\n  - team-b.nexmux.test=team-b\n")
	st.Daemon.PollWatched()
	if n := reloads(); n != 0 {
		t.Fatalf("%d reloads while the file was still changing, want 0:\n%s", n, logs.String())
	}
	st.Daemon.PollWatched()
	if n := reloads(); n != 1 {
		t.Fatalf("%d reloads once the file settled, want 1:\n%s", n, logs.String())
	}
	if got := get(st, "team-b", "/v2/"); got != http.StatusUnauthorized {
		t.Fatalf("team-b after the reload: %d, want Nexus's 401", got)
	}
	st.Daemon.PollWatched()
	if n := reloads(); n != 1 {
		t.Fatalf("%d reloads with nothing changed, want still 1", n)
	}
}

// A refused reload's line echoes a URL with credentials given to the wrong
// setting with its userinfo hidden, as check and the refusal at start do.
func TestRefusedReloadHidesEchoedCredentials(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	_, logs := reloadStack(t, file, "route: [\"team-a.nexmux.test=team-a\"]\n")
	writeFile(t, file, "route: [\"team-a.nexmux.test=team-a\", \"team-b.nexmux.test=http://admin:s3cret@nexus:8081\"]\nmirror: [\"admin:s3cret@nexus:8081\"]\n")
	line := waitLog(t, logs, "reload refused")
	if strings.Contains(line, "s3cret") || !strings.Contains(line, "xxxxx@nexus:8081") {
		t.Errorf("refusal with the credentials, or without the value hidden: %s", line)
	}
}
