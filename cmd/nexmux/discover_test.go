package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/certs"
)

// --password-file is the password with its one line ending removed, as
// --mirror-auth-file's line is: blanks are part of it, since Nexus
// compares it byte for byte.
func TestDiscoverPasswordFileAsWritten(t *testing.T) {
	var mu sync.Mutex
	var got []string
	sent := func() []string { mu.Lock(); defer mu.Unlock(); return got }
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pw, _ := r.BasicAuth()
		mu.Lock()
		got = append(got, pw)
		mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized) // what is sent is all this test reads
	}))
	defer hs.Close()
	dir := t.TempDir()
	// discover runs discover with a password file holding file and
	// returns the passwords Nexus was sent, stderr and the exit code.
	discover := func(file string) ([]string, string, int) {
		f := filepath.Join(dir, "pw")
		if err := os.WriteFile(f, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got = nil
		mu.Unlock()
		_, errs, code := run(t, "discover", "--nexus", hs.URL, "--user", "admin", "--password-file", f)
		return sent(), errs, code
	}
	for _, tc := range []struct{ file, want string }{
		{"s3cret\n", "s3cret"},
		{"s3cret\r\n", "s3cret"},
		{"s3cret", "s3cret"},
		{" s3cret \t\n", " s3cret \t"},
	} {
		if got, errs, code := discover(tc.file); code != 1 || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%q: exit %d, sent %q, want %q:\n%s", tc.file, code, got, tc.want, errs)
		}
	}
	// A second line is no part of a password: say so rather than send
	// it and report Nexus's 401 as bad credentials. So is an empty file.
	for _, bad := range []struct{ file, want string }{
		{"s3cret\n\n", "more than one line"},
		{"s3cret\nother\n", "more than one line"},
		{"\n", "empty"},
		{"", "empty"},
	} {
		if got, errs, code := discover(bad.file); code != exitInvalid || len(got) != 0 || !strings.Contains(errs, "password-file "+filepath.Join(dir, "pw")+": "+bad.want) {
			t.Errorf("%q: exit %d, sent %q:\n%s", bad.file, code, got, errs)
		}
	}
}

// --password-file is read like every file a configuration names: a FIFO
// without a writer fails at once instead of hanging discover, and a file
// over 16 MiB (a path naming something else by mistake) is refused with
// the other problems, not read whole.
func TestDiscoverPasswordFileReadBounded(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 17<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "discover", "--nexus", "http://127.0.0.1:1", "--user", "admin", "--password-file", big, "--format", "xml")
	if code != exitInvalid || !strings.Contains(errs, "larger than 16 MiB") || !strings.Contains(errs, `format "xml"`) {
		t.Errorf("a 17 MiB password file: exit %d:\n%s", code, errs)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Skip(err)
	}
	type result struct {
		errs string
		code int
	}
	done := make(chan result, 1)
	go func() {
		_, errs, code := run(t, "discover", "--nexus", "http://127.0.0.1:1", "--user", "admin", "--password-file", fifo)
		done <- result{errs, code}
	}()
	select {
	case r := <-done:
		if r.code != exitInvalid || !strings.Contains(r.errs, "FIFO") {
			t.Errorf("a FIFO without a writer: exit %d:\n%s", r.code, r.errs)
		}
	case <-time.After(5 * time.Second):
		// Let the blocked open return, so the test ends.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatal("a FIFO without a writer: discover blocked")
	}
}

// A bad --domain is the operator's, known before Nexus is asked: it is
// listed with the other flag problems (exit 2), and the credentials are
// not sent for an answer that could only end in that error.
func TestDiscoverDomainCheckedBeforeNexusIsAsked(t *testing.T) {
	url, pw, asked := askedNexus(t)
	for _, d := range []string{"bad..domain", "*.example.com", "example.com:443"} {
		_, errs, code := run(t, "discover", "--nexus", url, "--user", "admin", "--password-file", pw, "--domain", d)
		n := asked()
		if code != exitInvalid || n != 0 || !strings.Contains(errs, "--domain") {
			t.Errorf("--domain %q: exit %d, Nexus asked %d times:\n%s", d, code, n, errs)
		}
	}
}

// discoverThenCheck runs discover against a fixture Nexus holding repos,
// writes its YAML as a --config file and runs check on it with a wildcard
// certificate for *.corp.test, the operator's own: what discover prints is
// meant to be served as it is.
func discoverThenCheck(t *testing.T, repos []fixtures.Repo, extra ...string) (yaml, errs string, code int) {
	t.Helper()
	nx, err := fixtures.New(fixtures.Config{Users: map[string]string{"admin": "admin123"}, DataDir: t.TempDir(), Repos: repos})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(nx)
	defer func() { hs.Close(); nx.Close() }()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("admin123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, derrs, dcode := run(t, append([]string{"discover", "--nexus", hs.URL, "--user", "admin", "--password-file", pw, "--format", "yaml"}, extra...)...)
	if dcode != 0 {
		t.Fatalf("discover: exit %d:\n%s", dcode, derrs)
	}
	cfg := filepath.Join(dir, "nexmux.yaml")
	if err := os.WriteFile(cfg, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.NewCA("discover round trip")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue("*.corp.test")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := pair.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	_, errs, code = run(t, "check", "--config", cfg, "--cert", crt, "--key", key)
	return out, errs, code
}

// Without --domain discover has no name of the operator's for the registry
// mirrors; mirror.example.com is nobody's, and serve refuses a mirror name
// no certificate covers, so its lines made the whole printed configuration
// unusable wherever Nexus has a docker proxy (nearly everywhere).
func TestDiscoverOutputWithoutDomainIsServable(t *testing.T) {
	out, errs, code := discoverThenCheck(t, []fixtures.Repo{
		{Name: "team-a", Type: fixtures.Hosted, Online: true, HTTPPort: 8082},
		{Name: "dockerhub-proxy", Type: fixtures.Proxy, Online: true, RemoteURL: "https://registry-1.docker.io"},
	})
	if code != 0 {
		t.Errorf("check on discover's output: exit %d:\n%s\n%s", code, errs, out)
	}
}

// Nexus allows '.' in repository names ("docker.io-proxy"); <repo>.<domain>
// is then a name two labels below the domain, which the wildcard
// certificate for *.<domain> does not cover, and serve refuses a route no
// certificate covers: one such repository made the whole output unusable.
func TestDiscoverOutputWithDottedNameIsServable(t *testing.T) {
	out, errs, code := discoverThenCheck(t, []fixtures.Repo{
		{Name: "team-a", Type: fixtures.Hosted, Online: true, HTTPPort: 8082},
		{Name: "docker.io-proxy", Type: fixtures.Proxy, Online: true, HTTPPort: 8083},
	}, "--domain", "corp.test")
	if code != 0 {
		t.Errorf("check on discover's output: exit %d:\n%s\n%s", code, errs, out)
	}
	if !strings.Contains(out, "# no host name for docker.io-proxy: ") {
		t.Errorf("no note for the dotted name:\n%s", out)
	}
}

// A docker connector on 8443 (a common HTTPS port) is a --port route on
// nexmux's default --listen port, which check and serve refuse (it would
// shadow every --route). The printed configuration then names a listener
// port no connector uses, and the printed iptables command, followed as
// printed, agrees with it.
func TestDiscoverOutputWithConnectorOnTheListenPortIsServable(t *testing.T) {
	out, errs, code := discoverThenCheck(t, []fixtures.Repo{
		{Name: "team-a", Type: fixtures.Hosted, Online: true, HTTPSPort: 8443},
		{Name: "team-b", Type: fixtures.Hosted, Online: true, HTTPPort: 443},
	}, "--domain", "corp.test")
	if code != 0 {
		t.Fatalf("check on discover's output: exit %d:\n%s\n%s", code, errs, out)
	}
	_, cmd, ok := strings.Cut(out, "nexmux iptables ")
	if !ok {
		t.Fatalf("no iptables command:\n%s", out)
	}
	cmd, _, _ = strings.Cut(cmd, "\n")
	args := strings.Fields(strings.ReplaceAll(strings.TrimSuffix(cmd, " --load"), "'", ""))
	if _, errs, code := run(t, append([]string{"iptables"}, args...)...); code != 0 {
		t.Errorf("the printed iptables command %q: exit %d:\n%s", cmd, code, errs)
	}
}

// A --nexus URL discover cannot use is a flag problem like the others:
// listed with them (exit 2), not found only once they are fixed.
func TestDiscoverNexusURLListedWithTheOtherProblems(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("admin123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"nexus:8081", "ftp://nexus", "http://u:s3cret@nexus:8081", "http://nexus:8081/?x=1"} {
		_, errs, code := run(t, "discover", "--nexus", bad, "--user", "admin", "--password-file", pw, "--format", "xml")
		if code != exitInvalid || !strings.Contains(errs, "nexus URL") || !strings.Contains(errs, `format "xml"`) || strings.Contains(errs, "s3cret") {
			t.Errorf("--nexus %q with a bad --format: exit %d:\n%s", bad, code, errs)
		}
	}
}

// runToFullDisk runs nexmux with args, its output failing after 10 bytes
// as a full disk does: the exit status and stderr.
func runToFullDisk(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var errb bytes.Buffer
	code := 0
	oldExiter, oldErr := cli.OsExiter, cli.ErrWriter
	cli.OsExiter = func(c int) { code = c }
	cli.ErrWriter = &errb
	defer func() { cli.OsExiter, cli.ErrWriter = oldExiter, oldErr }()
	app := newApp()
	app.Writer, app.ErrWriter = &failingWriter{n: 10}, &errb
	if err := runApp(app, append([]string{"nexmux"}, args...)); err != nil && code == 0 {
		code = 1
	}
	return code, errb.String()
}

// failingWriter takes n bytes, then fails as a full disk does.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= w.n {
		w.n -= len(p)
		return len(p), nil
	}
	k := w.n
	w.n = 0
	return k, syscall.ENOSPC
}

// README's cut-over is "discover > nexmux.yaml.new && mv ...": the exit
// status is all that stands between a cut short file (a full disk) and
// the configuration serve reloads, which may still parse with routes
// missing. A failed write of the mapping is exit 1, with the reason.
func TestDiscoverFailedWriteIsAnError(t *testing.T) {
	nx, err := fixtures.New(fixtures.Config{Users: map[string]string{"admin": "admin123"}, DataDir: t.TempDir(),
		Repos: []fixtures.Repo{{Name: "team-a", Type: fixtures.Hosted, Online: true, HTTPPort: 8082}}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(nx)
	defer func() { hs.Close(); nx.Close() }()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("admin123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"yaml", "flags"} {
		code, errs := runToFullDisk(t, "discover", "--nexus", hs.URL, "--user", "admin", "--password-file", pw, "--format", format)
		if code == 0 || !strings.Contains(errs, "no space left") {
			t.Errorf("--format %s, output cut after 10 bytes: exit %d:\n%s", format, code, errs)
		}
	}
}

// A --user with ':' cannot be sent in HTTP Basic authentication: Nexus
// reads the part before it as the user, and answered 401, which discover
// reported as bad credentials. Refused before Nexus is asked, with the
// other problems.
func TestDiscoverUserWithColonRefused(t *testing.T) {
	asked := false
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked = true }))
	defer hs.Close()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("admin123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runRefused(t, "--user ad:min", []string{"discover", "--nexus", hs.URL, "--user", "ad:min", "--password-file", pw, "--format", "xml"},
		`user "ad:min": HTTP Basic authentication cannot carry a ':'`, `format "xml"`)
	if asked {
		t.Error("Nexus was asked")
	}
}

// askedNexus is a Nexus whose repositorySettings hold one hosted
// repository, with a password file for it; asked returns how many
// requests it got since asked was last called.
func askedNexus(t *testing.T) (url, pw string, asked func() int) {
	t.Helper()
	var n atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, `[{"name":"a","format":"docker","type":"hosted","docker":{"httpPort":8082}}]`)
	}))
	t.Cleanup(hs.Close)
	pw = filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("admin123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return hs.URL, pw, func() int { return int(n.Swap(0)) }
}
