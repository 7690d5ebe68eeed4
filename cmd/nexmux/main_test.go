package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/config"
)

// run executes the CLI in-process and returns stdout, stderr and the exit
// status it asked for.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := 0
	oldExiter, oldErr := cli.OsExiter, cli.ErrWriter
	cli.OsExiter = func(c int) { code = c }
	cli.ErrWriter = &errb
	t.Cleanup(func() { cli.OsExiter, cli.ErrWriter = oldExiter, oldErr })
	app := newApp()
	app.Writer, app.ErrWriter = &out, &errb
	if err := runApp(app, append([]string{"nexmux"}, args...)); err != nil && code == 0 {
		code = 1
	}
	return out.String(), errb.String(), code
}

// runRefused runs the CLI with args and wants it refused (exit status 2)
// with each of want in its stderr, which it returns; label names the case.
func runRefused(t *testing.T, label string, args []string, want ...string) string {
	t.Helper()
	_, errs, code := run(t, args...)
	if code != exitInvalid {
		t.Errorf("%s: exit %d, want %d:\n%s", label, code, exitInvalid, errs)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("%s: stderr lacks %q:\n%s", label, w, errs)
		}
	}
	return errs
}

func certFiles(t *testing.T) (string, string) {
	t.Helper()
	return certFilesFor(t, certs.DefaultValidity)
}

// certFilesFor writes a *.example.com pair valid for validity (negative:
// expired that long ago).
func certFilesFor(t *testing.T, validity time.Duration) (string, string) {
	t.Helper()
	ca, err := certs.NewCA("cli test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.IssueFor(validity, "*.example.com")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := p.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	return crt, key
}

// An expired certificate still loads (the client decides), but check and
// serve say so: clients refuse it, and the operator must not learn that
// from the first failed pull.
func TestCheckWarnsOfExpiredCertificate(t *testing.T) {
	crt, key := certFilesFor(t, -time.Minute)
	_, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "team-a.example.com=team-a")
	if code != 0 || !strings.Contains(errs, "nexmux: warning: certificate for *.example.com expired on ") {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	fresh, freshKey := certFiles(t)
	if _, errs, _ := run(t, "check", "--cert", fresh, "--key", freshKey, "--route", "team-a.example.com=team-a"); strings.Contains(errs, "warning") {
		t.Fatalf("a certificate valid for months drew a warning:\n%s", errs)
	}
}

func TestPrecedenceFlagEnvFile(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "listen: \":1111\"\ncert: [" + crt + "]\nkey: [" + key + "]\nroute:\n  - \"file.example.com=from-file\"\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "check", "--config", file)
	if code != 0 || !strings.Contains(out, "listen :1111") || !strings.Contains(out, "file.example.com") {
		t.Fatalf("file only: %d %q %q", code, out, errs)
	}
	t.Setenv("NEXMUX_LISTEN", ":2222")
	t.Setenv("NEXMUX_ROUTE", "env.example.com=pull:team-e,push:team-e-hosted,env2.example.com=e2")
	out, errs, code = run(t, "check", "--config", file)
	if code != 0 || !strings.Contains(out, "listen :2222") || strings.Contains(out, "file.example.com") ||
		!strings.Contains(out, "pull /repository/team-e/, push /repository/team-e-hosted/") || !strings.Contains(out, "env2.example.com") {
		t.Fatalf("env over file: %d %q %q", code, out, errs)
	}
	out, errs, code = run(t, "check", "--config", file, "--listen", ":3333", "--route", "flag.example.com=from-flag")
	if code != 0 || !strings.Contains(out, "listen :3333") || !strings.Contains(out, "flag.example.com") || strings.Contains(out, "env.example.com") {
		t.Fatalf("flag over env: %d %q %q", code, out, errs)
	}
}

func TestInvalidFlagsListEveryProblemAndExit2(t *testing.T) {
	_, errs, code := run(t, "check",
		"--route", "a.example.com=team-a", "--route", "A.example.com.=dup",
		"--route", "*.x.*.example.com=r", "--port", "99999=r", "--cert", "/nonexistent.pem",
		"--key", "/nonexistent.key", "--upstream", "ftp://nexus", "--log-format", "xml")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d", code, exitInvalid)
	}
	for _, want := range []string{"already routed", "'*' is allowed only", "99999", "/nonexistent.pem", "ftp://nexus", "log-format"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if n := strings.Count(strings.TrimSpace(errs), "\n"); n < 6 {
		t.Errorf("want one line per problem (6+), got:\n%s", errs)
	}
	// An unparsable value is a usage error with the same status.
	if _, _, code := run(t, "check", "--handshake-timeout", "soon"); code != exitInvalid {
		t.Errorf("bad duration: exit %d", code)
	}
	// A flag left without its value is named as everywhere else, with two dashes.
	if _, errs, code := run(t, "check", "--listen", ":1", "--route"); code != exitInvalid || !strings.Contains(errs, "flag needs an argument: --route\n") {
		t.Errorf("--route without a value: exit %d\n%s", code, errs)
	}
}

func TestIptablesCommand(t *testing.T) {
	out, errs, code := run(t, "iptables", "--listen", ":8443", "--port", "8082=team-a", "--port", "8083=team-a-hosted")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"*nat", "-N NEXMUX\n", "-A PREROUTING", "-A OUTPUT", "--dport 8082", "--dport 8083", "--to-ports 8443", "COMMIT"} {
		if !strings.Contains(out, want) {
			t.Errorf("rules lack %q:\n%s", want, out)
		}
	}
	out, _, _ = run(t, "iptables", "--listen", ":8443", "--port", "8082=team-a", "--jumps=false")
	if strings.Contains(out, "-A PREROUTING") {
		t.Errorf("--jumps=false still jumps:\n%s", out)
	}
	out, _, _ = run(t, "iptables", "--delete")
	if !strings.Contains(out, "-D PREROUTING") || !strings.Contains(out, "-X NEXMUX") {
		t.Errorf("delete rules:\n%s", out)
	}
	if _, _, code := run(t, "iptables", "--listen", ":8443", "--port", "8443=x"); code != exitInvalid {
		t.Errorf("port route on the listen port: exit %d", code)
	}
	// Like every flag, the iptables command's own are NEXMUX_<FLAG> too.
	t.Setenv("NEXMUX_CHAIN", "NEXMUX-ENV")
	t.Setenv("NEXMUX_JUMPS", "false")
	out, _, _ = run(t, "iptables", "--listen", ":8443", "--port", "8082=team-a")
	if !strings.Contains(out, ":NEXMUX-ENV - [0:0]") || strings.Contains(out, "-A PREROUTING") {
		t.Errorf("NEXMUX_CHAIN/NEXMUX_JUMPS ignored:\n%s", out)
	}
	t.Setenv("NEXMUX_DELETE", "true")
	out, _, _ = run(t, "iptables")
	if !strings.Contains(out, "-X NEXMUX-ENV") {
		t.Errorf("NEXMUX_DELETE ignored:\n%s", out)
	}
}

// The printed rules say which commands to pipe them to: those of the
// families chosen (--families, NEXMUX_FAMILIES, families:), not both
// whatever was asked: an IPv4-only host has no ip6tables-restore to pipe
// them to.
func TestIptablesPrintedRulesNameTheChosenFamilies(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("families: [ip6tables]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"default", "", nil, "#   iptables-restore --noflush  and  ip6tables-restore --noflush\n"},
		{"--families iptables", "", []string{"--families", "iptables"}, "#   iptables-restore --noflush\n"},
		{"--families ip6tables --jumps=false", "", []string{"--families", "ip6tables", "--jumps=false"}, "#   ip6tables-restore --noflush\n"},
		{"NEXMUX_FAMILIES", "iptables", nil, "#   iptables-restore --noflush\n"},
		{"families:", "", []string{"--config", file}, "#   ip6tables-restore --noflush\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("NEXMUX_FAMILIES", tc.env)
			}
			out, errs, code := run(t, append([]string{"iptables", "--listen", ":8443", "--port", "8082=team-a"}, tc.args...)...)
			if code != 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want the rules to say %q:\n%s%s", code, tc.want, out, errs)
			}
		})
	}
}

// A REDIRECT from PREROUTING lands on the interface's own address and one
// from OUTPUT on loopback, so rules for a loopback listener serve only this
// host and rules for one address only other hosts: iptables says so and
// still prints the rules; a wildcard listener draws no warning.
func TestIptablesWarnsOfListenAddress(t *testing.T) {
	for _, tc := range []struct{ listen, warning string }{
		{"127.0.0.1:8443", "is a loopback address"},
		{"[::1]:8443", "is a loopback address"},
		{"localhost:8443", "is a loopback address"},
		{"127.0.0.2:8443", "is a loopback address"},
		{"10.0.0.5:8443", "is one address"},
		{"[2001:db8::5]:8443", "is one address"},
		{"nexus-host.example.com:8443", "is one address"},
		{":8443", ""},
		{"0.0.0.0:8443", ""},
		{"[::]:8443", ""},
		{"[::ffff:0.0.0.0]:8443", ""},
		{"[::ffff:127.0.0.1]:8443", "is a loopback address"},
	} {
		out, errs, code := run(t, "iptables", "--listen", tc.listen, "--port", "8082=team-a")
		if code != 0 || !strings.Contains(out, "--to-ports 8443") {
			t.Fatalf("--listen %s: exit %d, rules:\n%s%s", tc.listen, code, out, errs)
		}
		if want := "nexmux: warning: listen " + tc.listen + " " + tc.warning; tc.warning != "" && !strings.Contains(errs, want) || tc.warning == "" && errs != "" {
			t.Errorf("--listen %s: stderr %q, want %q", tc.listen, errs, tc.warning)
		}
	}
}

func TestBadConfigurationTable(t *testing.T) {
	crt, key := certFiles(t)
	unreadable := filepath.Join(t.TempDir(), "secret.key")
	if err := os.WriteFile(unreadable, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	ok := []string{"--cert", crt, "--key", key}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"duplicate route", []string{"--route", "a.example.com=r", "--route", "A.EXAMPLE.COM.=s"}, "already routed"},
		{"cert without key", []string{"--route", "a.example.com=r", "--cert", crt}, "paired by position"},
		{"key without cert", []string{"--route", "a.example.com=r", "--key", key}, "paired by position"},
		{"unreadable cert", []string{"--route", "a.example.com=r", "--cert", "/nonexistent/c.pem", "--key", key}, "/nonexistent/c.pem"},
		{"key is not a key", []string{"--route", "a.example.com=r", "--cert", crt, "--key", crt}, "key"},
		{"port route on listen port", []string{"--listen", ":8443", "--port", "8443=r"}, "listen port"},
		{"bad CIDR", []string{"--route", "a.example.com=r", "--proxy-protocol-from", "10.0.0.0/33"}, "10.0.0.0/33"},
		{"wildcard in the middle", []string{"--route", "a.*.example.com=r"}, "'*' is allowed only"},
		{"wildcard on a TLD", []string{"--route", "*.com=r"}, "top-level"},
		{"wildcard glued", []string{"--route", "*foo.example.com=r"}, "'*' is allowed only"},
		{"bad repo name", []string{"--route", "a.example.com=../admin"}, "repository name"},
		{"no target", []string{"--route", "a.example.com"}, "HOST=REPO"},
		{"bad port", []string{"--port", "0=r"}, "not a port number"},
		{"duplicate port", []string{"--port", "8082=r", "--port", "8082=s"}, "already routed"},
		{"bad upstream", []string{"--route", "a.example.com=r", "--upstream", "nexus:8081"}, "upstream"},
		{"bad passthrough", []string{"--passthrough", "a.example.com=nohost"}, "HOST:PORT"},
		{"passthrough zone written as in a URL", []string{"--passthrough", "a.example.com=[fe80::1%25eth0]:443"}, "write it [fe80::1%eth0]:443"},
		{"passthrough and route on one name", []string{"--route", "a.example.com=r", "--passthrough", "a.example.com=127.0.0.1:9"}, "already routed"},
		{"bad proxy version", []string{"--route", "a.example.com=r", "--passthrough", "b.example.com=127.0.0.1:9", "--passthrough-proxy-protocol", "v3"}, "v1 or v2"},
		{"socks auth without listener", []string{"--route", "a.example.com=r", "--socks5-auth-file", "/nonexistent"}, "socks5"},
		{"negative timeout", []string{"--route", "a.example.com=r", "--drain-timeout", "-1s"}, "negative"},
		{"no routes", []string{}, "no routes"},
		{"unknown flag", []string{"--rout", "a=b"}, "rout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"check"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--cert") && !strings.Contains(strings.Join(tc.args, " "), "--key") {
				args = append(args, ok...)
			}
			_, errs, code := run(t, args...)
			if code != exitInvalid {
				t.Fatalf("exit %d, want %d (stderr %q)", code, exitInvalid, errs)
			}
			if !strings.Contains(errs, tc.want) {
				t.Fatalf("stderr lacks %q:\n%s", tc.want, errs)
			}
		})
	}
	// Several problems at once: all of them, one line each.
	_, errs, code := run(t, "check", "--route", "a.*.b=r", "--port", "0=r", "--cert", unreadable, "--key", key, "--log-level", "loud", "--proxy-protocol-from", "nope")
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if code != exitInvalid || len(lines) < 6 {
		t.Fatalf("exit %d, %d lines:\n%s", code, len(lines), errs)
	}
}

// An unparsable int, duration or bool, on the command line or in the
// environment, is listed with every other problem, not instead of them.
func TestUnparsableValuesListedWithEveryOtherProblem(t *testing.T) {
	crt, key := certFiles(t)
	t.Setenv("NEXMUX_IDLE_TIMEOUT", "soon")
	_, errs, code := run(t, "check", "--cert", crt, "--key", key,
		"--max-conns", "many", "--health-interval", "often", "--port-tls-only=maybe", "--route", "bad")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{`max-conns "many"`, `health-interval "often"`, `port-tls-only "maybe"`,
		`idle-timeout "soon" (from NEXMUX_IDLE_TIMEOUT)`, `route "bad"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	// A bare bool flag is still true, and a valid value still applies.
	t.Setenv("NEXMUX_IDLE_TIMEOUT", "")
	out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=r", "--no-memory-trim", "--max-conns", "064")
	if code != 0 || !strings.Contains(out, "a.example.com") {
		t.Fatalf("valid flags: exit %d\n%s%s", code, out, errs)
	}
}

// A zero duration or count whose real default is applied later (and named
// in the usage) is not shown as "(default: 0s)" in help.
func TestHelpShowsNoZeroDefaultForBuiltInDefaults(t *testing.T) {
	out, errs, _ := run(t, "serve", "--help")
	for _, line := range strings.Split(out+errs, "\n") {
		if strings.Contains(line, "--health-interval") || strings.Contains(line, "--upstream-max-conns") {
			if strings.Contains(line, "(default: 0") {
				t.Errorf("help contradicts the usage's default: %s", line)
			}
		}
	}
	if !strings.Contains(out+errs, "--health-interval") {
		t.Fatalf("no --health-interval in help:\n%s%s", out, errs)
	}
}

// discover lists every missing or bad flag at once, and a misspelt command
// is a usage error: exit status 2 like every other one.
func TestDiscoverAndUnknownCommandAreUsageErrors(t *testing.T) {
	_, errs, code := run(t, "discover", "--format", "xml", "--password-file", "/nonexistent/pw")
	if code != exitInvalid {
		t.Fatalf("discover: exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{"--nexus is required", "--user is required", `format "xml"`, "/nonexistent/pw"} {
		if !strings.Contains(errs, want) {
			t.Errorf("discover: stderr lacks %q:\n%s", want, errs)
		}
	}
	// A stray argument would drop every flag after it.
	_, errs, code = run(t, "discover", "--nexus", "http://127.0.0.1:1", "--user", "u", "--password-file", "/nonexistent/pw", "stray", "--format", "yaml")
	if code != exitInvalid || !strings.Contains(errs, `unexpected argument "stray"`) {
		t.Fatalf("discover with a stray argument: exit %d:\n%s", code, errs)
	}
	// A misspelt command names the command meant, as a misspelt flag does.
	for cmd, want := range map[string]string{
		"serv":     `unknown command "serv" (commands: serve, check, iptables, discover, version, did you mean serve?)`,
		"ipatbles": `unknown command "ipatbles" (commands: serve, check, iptables, discover, version, did you mean iptables?)`,
		"xyzzy":    `unknown command "xyzzy" (commands: serve, check, iptables, discover, version)` + "\n",
	} {
		_, errs, code = run(t, cmd)
		if code != exitInvalid || !strings.Contains(errs, want) {
			t.Errorf("unknown command %s: exit %d:\n%s\nwant %q", cmd, code, errs, want)
		}
	}
}

// A config file with a bad key still has its other keys and the flags
// validated in the same run: every problem at once.
func TestFileProblemsListedWithTheRest(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("max-conns: -1\nlog-level: loud\nlisten: x\nbind-ports: maybe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "check", "--config", file, "--cert", crt, "--key", key, "--route", "bad")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{`bind-ports: line 4: "maybe"`, "max-conns", "log-level", `listen "x"`, `route "bad"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

// A setting whose value could not be read is dropped; a problem that is
// only its consequence ("no routes" after a bad item dropped the file's
// route list, "no certificate" after a bad --cert list) would send the
// reader after a setting they did give. Other problems still show.
func TestDroppedSettingDoesNotAlsoReportItsAbsence(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		args       []string
		want, not  []string
	}{
		{"route list with a list item", "route:\n  - a.example.com=team-a\n  - [x]\nsocks5-auth-file: /nonexistent\n",
			[]string{"--cert", crt, "--key", key},
			[]string{"route: line 3: want a string", "socks5-auth-file is set but socks5-listen is not"}, []string{"no routes"}},
		{"route list with a null item", "route:\n  - a.example.com=team-a\n  -\n",
			[]string{"--cert", crt, "--key", key},
			[]string{"route: line 3: an empty item"}, []string{"no routes"}},
		{"cert list with a mapping", "cert:\n  - {a: b}\nroute: [a.example.com=team-a]\n",
			[]string{"--key", key},
			[]string{"cert: line 2: want a string"}, []string{"no certificate", "paired by position"}},
		{"a bad number elsewhere keeps the route problem", "max-conns: lots\n",
			[]string{"--cert", crt, "--key", key},
			[]string{"max-conns", "no routes"}, nil},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
		if err := os.WriteFile(file, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		errs := runRefused(t, tc.name, append([]string{"check", "--config", file}, tc.args...), tc.want...)
		for _, n := range tc.not {
			if strings.Contains(errs, n) {
				t.Errorf("%s: stderr says %q, a consequence of the dropped value:\n%s", tc.name, n, errs)
			}
		}
	}
}

// A setting reported for a value that could not be read may still hold
// one: a file key given twice keeps its first value, a bad file value is
// replaced by the flag's. A problem of how that value goes with the others
// is real, and must be listed in the same run.
func TestDroppedSettingInEffectKeepsItsProblems(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		args       []string
		want       []string
	}{
		{"a key given twice", "socks5-auth-file: /nonexistent\nsocks5-auth-file: /nonexistent2\n",
			[]string{"--route", "a.example.com=team-a"},
			[]string{`key "socks5-auth-file" already defined`, "socks5-auth-file is set but socks5-listen is not"}},
		{"a bad file value the flag replaces", "socks5-auth-file: [x]\n",
			[]string{"--route", "a.example.com=team-a", "--socks5-auth-file", "/nonexistent"},
			[]string{"socks5-auth-file: line 1", "socks5-auth-file is set but socks5-listen is not"}},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
		if err := os.WriteFile(file, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		runRefused(t, tc.name, append([]string{"check", "--config", file, "--cert", crt, "--key", key}, tc.args...), tc.want...)
	}
}

// A dropped setting's name inside a value (a route's host "mirror.corp",
// "key.example.org") does not name the setting: the problem of that route
// is its own, and is listed beside the bad value.
func TestDroppedSettingNameInAValueKeepsTheProblem(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml, host string
	}{
		{"mirror", "mirror: {a: b}\n", "mirror.corp.test"},
		{"port", "port: {a: b}\n", "registry.port.test"},
	} {
		file := filepath.Join(dir, tc.name+".yaml")
		if err := os.WriteFile(file, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		runRefused(t, tc.name+" dropped", []string{"check", "--config", file, "--cert", crt, "--key", key, "--upstream", "http://127.0.0.1:8081", "--route", tc.host + "=team-a"},
			"config "+file, "route "+tc.host+": no --cert covers this name")
	}
}

// A stray argument ends flag parsing; the flags after it must not be
// dropped silently.
func TestStrayArgumentIsAnError(t *testing.T) {
	crt, key := certFiles(t)
	_, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=r", "--bind-ports", "true", "--port", "8082=team-a")
	if code != exitInvalid || !strings.Contains(errs, `unexpected argument "true"`) {
		t.Fatalf("exit %d, want %d and the argument named:\n%s", code, exitInvalid, errs)
	}
	// The flags after it are still read and checked, every problem at
	// once, and the routes they give are not reported missing.
	errs = runRefused(t, "flags after a stray argument", []string{"check", "--cert", crt, "--key", key, "--bind-ports", "true", "--max-conns", "lots", "--route", "bad", "stray", "--port", "0=x"},
		`unexpected argument "true"`, `unexpected argument "stray"`, `max-conns "lots"`, `route "bad"`, `port "0=x"`)
	if strings.Contains(errs, "no routes") {
		t.Errorf("routes given after a stray argument reported missing:\n%s", errs)
	}
	// After "--" nothing is a flag: still named, not read.
	runRefused(t, "after --", []string{"check", "--cert", crt, "--key", key, "--route", "a.example.com=r", "--", "--listen", ":1"}, `unexpected argument "--listen"`)
}

// The iptables command's own flags are keys of the config file that serve
// and check share with it (they ignore them), with the precedence of every
// setting: flag > env > file.
func TestIptablesFlagsAreFileKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "listen: \":8443\"\nport: [\"8082=team-a\"]\nchain: NX-FILE\njumps: false\nfamilies: [iptables]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "iptables", "--config", file)
	if code != 0 || !strings.Contains(out, ":NX-FILE - [0:0]") || strings.Contains(out, "-A PREROUTING") {
		t.Fatalf("chain and jumps from the file: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := run(t, "check", "--config", file); code != 0 || !strings.Contains(out, "8082") {
		t.Fatalf("check reading the shared file: exit %d\n%s%s", code, out, errs)
	}
	t.Setenv("NEXMUX_CHAIN", "NX-ENV")
	out, errs, code = run(t, "iptables", "--config", file)
	if code != 0 || !strings.Contains(out, ":NX-ENV - [0:0]") {
		t.Fatalf("env over file: exit %d\n%s%s", code, out, errs)
	}
	out, errs, code = run(t, "iptables", "--config", file, "--chain", "NX-FLAG", "--jumps")
	if code != 0 || !strings.Contains(out, "-N NX-FLAG\n") || !strings.Contains(out, "-A PREROUTING") {
		t.Fatalf("flag over env and file: exit %d\n%s%s", code, out, errs)
	}
	// delete and families from the file too.
	if err := os.WriteFile(file, []byte(yaml+"delete: true\nload: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := run(t, "iptables", "--config", file); code != 0 || !strings.Contains(out, "-X NX-ENV") {
		t.Fatalf("delete from the file: exit %d\n%s%s", code, out, errs)
	}
	bad := strings.Replace(yaml, "families: [iptables]", "families: [nft]", 1)
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "iptables", "--config", file); code != exitInvalid || !strings.Contains(errs, `family "nft"`) {
		t.Fatalf("families from the file: exit %d\n%s", code, errs)
	}
}

// Every problem of an iptables run is listed at once: unparsable bools
// (flag or environment), the port routes, the chain and the families.
func TestIptablesListsEveryProblem(t *testing.T) {
	t.Setenv("NEXMUX_JUMPS", "bogus")
	t.Setenv("NEXMUX_LOAD", "bogus")
	_, errs, code := run(t, "iptables", "--listen", "x", "--port", "8082=a")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{`jumps "bogus" (from NEXMUX_JUMPS)`, `load "bogus" (from NEXMUX_LOAD)`, `listen "x"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	t.Setenv("NEXMUX_JUMPS", "")
	t.Setenv("NEXMUX_LOAD", "")
	_, errs, code = run(t, "iptables", "--chain", "bad!", "--port", "bad", "--families", "nft", "--delete=maybe")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{`chain "bad!"`, `port "bad"`, `family "nft"`, `delete "maybe"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	// With --delete there are no ports to check; the chain still is.
	_, errs, code = run(t, "iptables", "--delete", "--chain", "bad!", "--families", "nft")
	if code != exitInvalid || !strings.Contains(errs, `chain "bad!"`) || !strings.Contains(errs, `family "nft"`) {
		t.Fatalf("--delete: exit %d:\n%s", code, errs)
	}
}

// A built-in chain is refused, printed or loaded; printing needs no look
// at the nat table, so any other valid name prints, as rules that fail
// over an existing chain rather than flush it (internal/iptables'
// TestPipedRulesNeverFlushAForeignChain pipes them).
func TestIptablesRefusesBuiltinChain(t *testing.T) {
	for _, args := range [][]string{
		{"--chain", "PREROUTING", "--listen", ":8443", "--port", "8082=a"},
		{"--chain", "OUTPUT", "--delete"},
	} {
		out, errs, code := run(t, append([]string{"iptables"}, args...)...)
		if code != exitInvalid || !strings.Contains(errs, "built-in chain") || out != "" {
			t.Errorf("%q: exit %d, stdout %q:\n%s", args, code, out, errs)
		}
	}
	if out, errs, code := run(t, "iptables", "--chain", "DOCKER", "--listen", ":8443", "--port", "8082=a"); code != 0 || !strings.Contains(out, "-N DOCKER\n") || strings.Contains(out, ":DOCKER") {
		t.Errorf("printing for chain DOCKER: exit %d\n%s%s", code, out, errs)
	}
}

// An unknown flag is listed with every other problem of the command line,
// and the flags after it are still read: Go's flag parser alone stops at
// it and reports nothing else.
func TestUnknownFlagListedWithTheRest(t *testing.T) {
	crt, key := certFiles(t)
	_, errs, code := run(t, "check", "--rout", "a=b", "--max-conns", "many", "-listne=:1", "--cert", crt, "--key", key, "--route", "bad")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{"flag provided but not defined: --rout", "flag provided but not defined: -listne", `max-conns "many"`, `route "bad"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, `"a=b"`) || strings.Contains(errs, "no routes") {
		t.Errorf("the unknown flag's value or the flags after it were misread:\n%s", errs)
	}
	// Alone, it is still refused, with the rest valid and read.
	out, errs, code := run(t, "check", "--bogus", "--cert", crt, "--key", key, "--route", "a.example.com=r")
	if code != exitInvalid || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 1 || !strings.Contains(errs, "--bogus") {
		t.Fatalf("exit %d, want %d and one problem:\n%s%s", code, exitInvalid, out, errs)
	}
	// Before any command, and after one that takes no flags: named as
	// typed, with two dashes, exit 2 (not urfave/cli's usage screen and 1).
	for _, cmd := range [][]string{{"--bogus"}, {"version", "--bogus"}} {
		_, errs, code := run(t, cmd...)
		if code != exitInvalid || !strings.Contains(errs, "flag provided but not defined: --bogus") {
			t.Errorf("%q: exit %d, want %d naming --bogus:\n%s", cmd, code, exitInvalid, errs)
		}
	}
	for _, cmd := range [][]string{
		{"iptables", "--chian", "X", "--port", "0=r"},
		{"discover", "--nexsu", "http://127.0.0.1:1", "--format", "xml"},
	} {
		_, errs, code := run(t, cmd...)
		if code != exitInvalid || !strings.Contains(errs, "flag provided but not defined: "+cmd[1]) || strings.Count(strings.TrimSpace(errs), "\n") < 2 {
			t.Errorf("%s: exit %d, want %d and every problem:\n%s", cmd[0], code, exitInvalid, errs)
		}
	}
}

func TestStripUnknownFlags(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, kept, unknown string }{
		{"--route a=b --bogus --listen :1", "--route a=b --listen :1", "--bogus"},
		{"--bogus v --listen :1", "--listen :1", "--bogus"},
		{"--bogus=v -x --listen=:1", "--listen=:1", "--bogus -x"},
		{"--drain-timeout -1s --nope", "--drain-timeout -1s", "--nope"},
		{"--bind-ports --nope x", "--bind-ports", "--nope"},
		{"--bind-ports stray --nope", "--bind-ports", "--nope"},
		{"-- --nope", "-- --nope", ""},
		{"--help --nope", "--help", "--nope"},
	} {
		args := append([]string{"nexmux", "check"}, strings.Fields(tc.in)...)
		kept, unknown, _, _ := stripUnknownFlags(app, args)
		if got := strings.Join(kept[2:], " "); got != tc.kept {
			t.Errorf("%q: kept %q, want %q", tc.in, got, tc.kept)
		}
		if got := strings.Join(unknown, " "); got != tc.unknown {
			t.Errorf("%q: unknown %q, want %q", tc.in, got, tc.unknown)
		}
	}
}

// check prints the warnings serve would log (exit 0: the configuration is
// valid).
func TestCheckPrintsWarnings(t *testing.T) {
	crt, key := certFiles(t)
	auth := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(auth, []byte("alice:secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=r",
		"--socks5-listen", "127.0.0.1:0", "--socks5-auth-file", auth)
	if code != 0 || !strings.Contains(out, "a.example.com") {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "warning: socks5-auth-file "+auth+" is readable by every user") {
		t.Fatalf("stderr lacks the world-readable warning:\n%s", errs)
	}
}

// A Service named nexmux makes Kubernetes give every pod of its namespace
// NEXMUX_PORT=tcp://IP:PORT (with NEXMUX_SERVICE_HOST): nexmux starts,
// saying it ignores it, instead of refusing it as a --port value. A real
// NEXMUX_PORT, or one without the service link's companion, is still read.
func TestKubernetesServiceLinkIsNoPortRoute(t *testing.T) {
	crt, key := certFiles(t)
	base := []string{"check", "--listen", ":4444", "--cert", crt, "--key", key, "--route", "a.example.com=team-a"}
	t.Setenv("NEXMUX_SERVICE_HOST", "10.96.0.17")
	t.Setenv("NEXMUX_PORT", "tcp://10.96.0.17:443")
	out, errs, code := run(t, base...)
	if code != 0 || !strings.Contains(errs, "ignoring NEXMUX_PORT=tcp://10.96.0.17:443") {
		t.Fatalf("service link: exit %d\n%s\n%s", code, out, errs)
	}
	// iptables reads --port too, and says what it ignored.
	t.Setenv("NEXMUX_PORT", "tcp://10.96.0.17:443")
	if out, errs, code := run(t, "iptables", "--port", "8082=team-a"); code != 0 || !strings.Contains(errs, "ignoring NEXMUX_PORT=tcp://10.96.0.17:443") || !strings.Contains(out, "8082") {
		t.Fatalf("iptables with a service link: exit %d\n%s\n%s", code, out, errs)
	}
	t.Setenv("NEXMUX_PORT", "8082=team-a")
	if out, errs, code := run(t, base...); code != 0 || !strings.Contains(out, "8082") || strings.Contains(errs, "ignoring") {
		t.Fatalf("a real NEXMUX_PORT: exit %d\n%s\n%s", code, out, errs)
	}
	t.Setenv("NEXMUX_SERVICE_HOST", "")
	t.Setenv("NEXMUX_PORT", "tcp://10.96.0.17:443")
	if _, errs, code := run(t, base...); code != exitInvalid || strings.Contains(errs, "ignoring") {
		t.Fatalf("no service link: exit %d, want the port refused\n%s", code, errs)
	}
}

// Kubernetes gives a pod service links for every Service of its namespace:
// one named nexmux-ha or nexmux-lb sets NEXMUX_HA_PORT=tcp://IP:PORT, a
// letter or two from NEXMUX_PORT. Those are no misspelling and draw no
// warning; a misspelt setting beside them still does.
func TestOtherServicesLinksAreNoMisspelling(t *testing.T) {
	crt, key := certFiles(t)
	for _, svc := range []string{"NEXMUX_HA", "NEXMUX_LB"} {
		t.Setenv(svc+"_SERVICE_HOST", "10.96.0.18")
		t.Setenv(svc+"_SERVICE_PORT", "443")
		t.Setenv(svc+"_SERVICE_PORT_HTTPS", "443")
		t.Setenv(svc+"_PORT", "tcp://10.96.0.18:443")
		t.Setenv(svc+"_PORT_443_TCP", "tcp://10.96.0.18:443")
		t.Setenv(svc+"_PORT_443_TCP_PROTO", "tcp")
		t.Setenv(svc+"_PORT_443_TCP_PORT", "443")
		t.Setenv(svc+"_PORT_443_TCP_ADDR", "10.96.0.18")
	}
	t.Setenv("NEXMUX_MAXCONNS", "10")
	out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=team-a")
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	if n := strings.Count(errs, "ignoring NEXMUX_"); n != 1 || !strings.Contains(errs, "ignoring NEXMUX_MAXCONNS") {
		t.Errorf("%d variables warned of, want NEXMUX_MAXCONNS alone:\n%s", n, errs)
	}
}

// iptables --delete removes the rules whatever else is wrong with the
// configuration: a bad value of a setting only the daemon reads (in the
// file, a flag or its environment variable) is a warning, so the
// redirects do not outlive nexmux. The chain, jumps and families it does
// read are still checked.
func TestIptablesDeleteIgnoresOtherSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("max-conns: lots\nmax-conns: 3\nchain: NX-DEL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEXMUX_IDLE_TIMEOUT", "forever")
	out, errs, code := run(t, "iptables", "--config", file, "--delete")
	if code != 0 || !strings.Contains(out, "-X NX-DEL") {
		t.Fatalf("--delete with other settings bad: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"max-conns", `already defined`, "NEXMUX_IDLE_TIMEOUT", "ignored by --delete"} {
		if !strings.Contains(errs, want) {
			t.Errorf("warnings lack %q:\n%s", want, errs)
		}
	}
	// Without --delete the same configuration is refused, every problem
	// listed.
	if _, errs, code := run(t, "iptables", "--config", file, "--port", "8082=a"); code != exitInvalid || !strings.Contains(errs, "max-conns") || !strings.Contains(errs, "NEXMUX_IDLE_TIMEOUT") {
		t.Errorf("without --delete: exit %d\n%s", code, errs)
	}
	// What --delete reads stays checked.
	if err := os.WriteFile(file, []byte("max-conns: lots\nchain: NX-DEL\njumps: maybe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "iptables", "--config", file, "--delete"); code != exitInvalid || !strings.Contains(errs, "jumps") {
		t.Errorf("--delete with a bad jumps: exit %d\n%s", code, errs)
	}
}

// An unknown key of the config file (a misspelt daemon setting, or one a
// newer nexmux knows) does not keep --delete from removing the rules, as a
// bad value of a daemon setting does not: it is a warning there. A key
// that may be a misspelling of what --delete reads (chain, families, ...)
// is still refused: the rules of the default chain, perhaps another
// instance's, would go instead.
func TestIptablesDeleteIgnoresUnknownKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("routes: [a.example.com=r]\nmax-requests: 5\nconfig: other.yaml\nchain: NX-DEL\n")
	out, errs, code := run(t, "iptables", "--config", file, "--delete")
	if code != 0 || !strings.Contains(out, "-X NX-DEL") {
		t.Fatalf("--delete with unknown keys: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"field routes not found", "field max-requests not found", "cannot name another one", "ignored by --delete"} {
		if !strings.Contains(errs, want) {
			t.Errorf("warnings lack %q:\n%s", want, errs)
		}
	}
	// Still refused without --delete, by every command.
	for _, cmd := range [][]string{{"iptables", "--port", "8082=a"}, {"check", "--port", "8082=a"}} {
		if _, errs, code := run(t, append(cmd, "--config", file)...); code != exitInvalid || !strings.Contains(errs, "field routes not found") {
			t.Errorf("%s without --delete: exit %d\n%s", cmd[0], code, errs)
		}
	}
	for _, key := range []string{"chian: NX-DEL", "chains: NX-DEL", "NEXMUX_CHAIN: NX-DEL", "iptables-chain: NX-DEL", "famlies: [iptables]", "family: iptables"} {
		write(key + "\n")
		out, errs, code := run(t, "iptables", "--config", file, "--delete")
		if code != exitInvalid || out != "" || !strings.Contains(errs, "not found") || !strings.Contains(errs, "misspelt") {
			t.Errorf("%q with --delete: exit %d, want %d and the key refused as a possible misspelling\n%s%s", key, code, exitInvalid, out, errs)
		}
	}
	// A key that only shares letters with a short iptables setting (log,
	// a misspelt log-level, is two edits from load; upload-timeout holds
	// it) is no misspelling of one: refused, it left the rules in place.
	for _, key := range []string{"log: debug", "reload-interval: 5s", "upload-timeout: 1m", "main: x"} {
		write(key + "\nchain: NX-DEL\n")
		out, errs, code := run(t, "iptables", "--config", file, "--delete")
		if code != 0 || !strings.Contains(out, "-X NX-DEL") || !strings.Contains(errs, "ignored by --delete") {
			t.Errorf("%q with --delete: exit %d, want the key ignored and the rules removed\n%s%s", key, code, out, errs)
		}
	}
}

// An empty variable counts as unset for discover's flags too, as README
// says of every setting: NEXMUX_FORMAT= (a compose file passing through an
// unset ${FORMAT}) is the default format, not an invalid one.
func TestDiscoverEmptyEnvIsUnset(t *testing.T) {
	for _, f := range []string{"nexus", "user", "password-file", "domain", "format"} {
		t.Setenv(config.EnvVar(f), "")
	}
	_, errs, code := run(t, "discover")
	if code != exitInvalid || !strings.Contains(errs, "--nexus is required") {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	if strings.Contains(errs, "format") {
		t.Errorf("an empty NEXMUX_FORMAT was read as the format:\n%s", errs)
	}
}

// discover's problems name the variable a bad value came from, as check's
// do: "format \"xml\"" alone sends the reader to a command line without
// --format.
func TestDiscoverEnvValuesNameTheirVariable(t *testing.T) {
	t.Setenv("NEXMUX_NEXUS", "ftp://nexus")
	t.Setenv("NEXMUX_DOMAIN", "-bad")
	t.Setenv("NEXMUX_FORMAT", "xml")
	t.Setenv("NEXMUX_PASSWORD_FILE", filepath.Join(t.TempDir(), "absent"))
	_, errs, code := run(t, "discover", "--user", "admin")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for want, env := range map[string]string{"ftp://nexus": "NEXMUX_NEXUS", `"-bad"`: "NEXMUX_DOMAIN", `format "xml"`: "NEXMUX_FORMAT", "absent": "NEXMUX_PASSWORD_FILE"} {
		line := ""
		for _, l := range strings.Split(errs, "\n") {
			if strings.Contains(l, want) {
				line = l
			}
		}
		if !strings.HasSuffix(line, "(from "+env+")") {
			t.Errorf("the line of %s does not end with (from %s): %q\n%s", want, env, line, errs)
		}
	}
}

// A flag left without its value, at the end of the command line, is one
// problem among the others: flag parsing alone stops at it and reports
// nothing else, hiding the unknown flag and the bad values before it.
func TestFlagWithoutValueListedWithTheRest(t *testing.T) {
	_, errs, code := run(t, "check", "--bogus", "--max-conns", "x", "--listen", "nope", "--route")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{"flag needs an argument: --route", "flag provided but not defined: --bogus", `max-conns "x"`, `listen "nope"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	// iptables --delete reads no routes, yet a flag without its value
	// (here its chain) still stops it.
	if out, errs, code := run(t, "iptables", "--delete", "--chain"); code != exitInvalid || out != "" || !strings.Contains(errs, "flag needs an argument: --chain") {
		t.Errorf("iptables --delete --chain: exit %d\n%s%s", code, out, errs)
	}
}

// A NEXMUX_ variable a letter or two from a setting's (a plural, a lost
// underscore) is read by nothing: check says so, naming the setting meant,
// and the configuration is still valid. Variables far from every setting
// (the test scripts', Kubernetes service links for other Services) draw
// nothing.
func TestMisspeltEnvironmentVariableWarned(t *testing.T) {
	crt, key := certFiles(t)
	t.Setenv("NEXMUX_ROUTES", "b.example.com=team-b")
	t.Setenv("NEXMUX_MAXCONNS", "10")
	t.Setenv("NEXMUX_UPSTREAM_MAX_CON", "10")
	for _, v := range []string{"NEXMUX_REQUIRE_NETNS", "NEXMUX_SOAK", "NEXMUX_TEST_LOG", "NEXMUX_TEST_UPSTREAM_TRANSPORT",
		"NEXMUX_BENCH_IDLE_CLIENT", "NEXMUX_BENCH_H2_PEER", "NEXMUX_PID", "NEXMUX_LINES",
		"NEXMUX_METRICS_SERVICE_HOST", "NEXMUX_METRICS_SERVICE_PORT", "NEXMUX_METRICS_PORT", "NEXMUX_METRICS_PORT_9090_TCP_ADDR"} {
		t.Setenv(v, "1")
	}
	out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=team-a")
	if code != 0 || !strings.Contains(out, "a.example.com") || strings.Contains(out, "b.example.com") {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	for _, want := range []string{"ignoring NEXMUX_ROUTES: no setting reads it (did you mean NEXMUX_ROUTE?)",
		"ignoring NEXMUX_MAXCONNS: no setting reads it (did you mean NEXMUX_MAX_CONNS?)",
		"ignoring NEXMUX_UPSTREAM_MAX_CON: no setting reads it (did you mean NEXMUX_UPSTREAM_MAX_CONNS?)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if n := strings.Count(errs, "ignoring NEXMUX_"); n != 3 {
		t.Errorf("%d variables warned of, want the 3 misspelt ones:\n%s", n, errs)
	}
}

// A short name is warned of too where it can only be a misspelling: two
// neighbouring letters swapped (NEXMUX_CHIAN left nexmux iptables on the
// default chain without a word) or another case. One a letter from a
// short name (NEXMUX_SOAK, NEXMUX_PORTS) still draws nothing: too many
// names of scripts and services are.
func TestMisspeltShortVariableWarned(t *testing.T) {
	crt, key := certFiles(t)
	for _, v := range []string{"NEXMUX_CHIAN", "NEXMUX_LAOD", "NEXMUX_PROT", "NEXMUX_key"} {
		t.Setenv(v, "1")
	}
	for _, v := range []string{"NEXMUX_SOAK", "NEXMUX_PID", "NEXMUX_LINES", "NEXMUX_PORTS", "NEXMUX_CERTS", "NEXMUX_HOME",
		"NEXMUX_TAG", "NEXMUX_DIR", "NEXMUX_IMAGE", "NEXMUX_LOG", "NEXMUX_HOST", "NEXMUX_KEYS", "NEXMUX_USERS"} {
		t.Setenv(v, "1")
	}
	out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=team-a")
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errs)
	}
	for _, want := range []string{"ignoring NEXMUX_CHIAN: no setting reads it (did you mean NEXMUX_CHAIN?)",
		"ignoring NEXMUX_LAOD: no setting reads it (did you mean NEXMUX_LOAD?)",
		"ignoring NEXMUX_PROT: no setting reads it (did you mean NEXMUX_PORT?)",
		"ignoring NEXMUX_key: no setting reads it (did you mean NEXMUX_KEY?)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if n := strings.Count(errs, "ignoring NEXMUX_"); n != 4 {
		t.Errorf("%d variables warned of, want the 4 misspelt ones:\n%s", n, errs)
	}
}

// The warning of a misspelt variable is given when the configuration is
// refused too, where it matters most: NEXMUX_ROUTES instead of
// NEXMUX_ROUTE is what leaves "no routes", and check and serve said only
// that. discover, whose variables these can be, gave it never.
func TestMisspeltVariableWarnedWhenRefused(t *testing.T) {
	t.Setenv("NEXMUX_ROUTES", "a.example.com=team-a")
	t.Setenv("NEXMUX_DOMIAN", "registry.example.com")
	t.Setenv("NEXMUX_FAMILES", "iptables")
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check"}, "no routes"},
		{[]string{"serve", "--listen", "127.0.0.1:0"}, "no routes"},
		{[]string{"iptables", "--config", missing}, missing},
		{[]string{"discover", "--nexus", "http://127.0.0.1:1"}, "--user is required"},
	} {
		_, errs, code := run(t, tc.args...)
		if code != exitInvalid || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, want %d and %q:\n%s", tc.args[0], code, exitInvalid, tc.want, errs)
		}
		for _, w := range []string{"(did you mean NEXMUX_ROUTE?)", "(did you mean NEXMUX_DOMAIN?)", "(did you mean NEXMUX_FAMILIES?)"} {
			if !strings.Contains(errs, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", tc.args[0], w, errs)
			}
		}
	}
}

// One file serves every command, so check reports what `nexmux iptables`
// would refuse in it (the chain, the families), with every other problem:
// otherwise a file check passed could fail at the init container or the
// iptables unit.
func TestCheckReportsIptablesSettings(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "c.yaml")
	body := "cert: [" + crt + "]\nkey: [" + key + "]\nroute: [team-a.example.com=team-a]\nport: [8082=team-a]\n"
	if err := os.WriteFile(file, []byte(body+"log-level: loud\nchain: PREROUTING\nfamilies: [iptables, nft]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	problems := []string{`chain "PREROUTING" is a built-in chain`, `family "nft"`}
	_, errs, code := run(t, "check", "--config", file)
	if code != exitInvalid {
		t.Fatalf("check: exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range append(problems, `log-level "loud"`) {
		if !strings.Contains(errs, want) {
			t.Errorf("check: stderr lacks %q:\n%s", want, errs)
		}
	}
	_, errs, code = run(t, "iptables", "--config", file)
	for _, want := range problems {
		if code != exitInvalid || !strings.Contains(errs, want) {
			t.Errorf("iptables: exit %d, stderr lacks %q:\n%s", code, want, errs)
		}
	}
	if err := os.WriteFile(file, []byte(body+"chain: \"NEX MUX\"\nfamilies: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code = run(t, "check", "--config", file)
	for _, want := range []string{`chain "NEX MUX": want letters`, "no family"} {
		if code != exitInvalid || !strings.Contains(errs, want) {
			t.Errorf("check: exit %d, stderr lacks %q:\n%s", code, want, errs)
		}
	}
	// Valid iptables settings, or none, leave check as it was.
	for _, extra := range []string{"chain: NX-B\nfamilies: [ip6tables]\njumps: false\n", ""} {
		if err := os.WriteFile(file, []byte(body+extra), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, errs, code := run(t, "check", "--config", file); code != 0 || !strings.Contains(out, "team-a.example.com") {
			t.Errorf("check with %q: exit %d\n%s%s", extra, code, out, errs)
		}
	}
	// The unit or init container may give them by environment or flag
	// instead: check reads them where iptables does, with the same
	// precedence, so a valid file's bad NEXMUX_CHAIN is reported too.
	t.Setenv("NEXMUX_CHAIN", "OUTPUT")
	t.Setenv("NEXMUX_FAMILIES", "iptables,nft")
	for _, args := range [][]string{{}, {"--chain", "INPUT"}, {"--families", "pf"}} {
		_, errs, code := run(t, append([]string{"check", "--config", file}, args...)...)
		want := []string{`chain "OUTPUT" is a built-in chain`, `family "nft"`}
		if len(args) > 0 && args[0] == "--chain" {
			want[0] = `chain "INPUT" is a built-in chain`
		}
		if len(args) > 0 && args[0] == "--families" {
			want[1] = `family "pf"`
		}
		for _, w := range want {
			if code != exitInvalid || !strings.Contains(errs, w) {
				t.Errorf("check %q with NEXMUX_CHAIN, NEXMUX_FAMILIES: exit %d, stderr lacks %q:\n%s", args, code, w, errs)
			}
		}
	}
	t.Setenv("NEXMUX_CHAIN", "NX-ENV")
	t.Setenv("NEXMUX_FAMILIES", "ip6tables")
	if out, errs, code := run(t, "check", "--config", file); code != 0 || !strings.Contains(out, "team-a.example.com") {
		t.Errorf("check with valid NEXMUX_CHAIN, NEXMUX_FAMILIES: exit %d\n%s%s", code, out, errs)
	}
}

// The iptables settings are environment variables as well as file keys
// (README, Legacy connector ports), and check reports what `nexmux
// iptables` would refuse in them either way: NEXMUX_CHAIN=PREROUTING is
// refused by the iptables unit, so check must not pass it.
func TestCheckReportsIptablesEnvironment(t *testing.T) {
	crt, key := certFiles(t)
	args := []string{"check", "--cert", crt, "--key", key, "--route", "team-a.example.com=team-a"}
	t.Setenv("NEXMUX_CHAIN", "PREROUTING")
	t.Setenv("NEXMUX_FAMILIES", "iptables,nft")
	t.Setenv("NEXMUX_JUMPS", "maybe")
	_, errs, code := run(t, args...)
	if code != exitInvalid {
		t.Fatalf("check: exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{`chain "PREROUTING" is a built-in chain`, `family "nft"`, `jumps "maybe" (from NEXMUX_JUMPS)`} {
		if !strings.Contains(errs, want) {
			t.Errorf("check: stderr lacks %q:\n%s", want, errs)
		}
	}
	// The environment wins over the file, as for every setting.
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("chain: NX-FILE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, append(args, "--config", file)...); code != exitInvalid || !strings.Contains(errs, `chain "PREROUTING"`) {
		t.Errorf("check with a file: exit %d, want the environment's chain refused:\n%s", code, errs)
	}
	// Valid values, or blank ones, leave check as it was.
	for _, v := range [][3]string{{"NX-B", "ip6tables", "false"}, {"", " , ", ""}} {
		t.Setenv("NEXMUX_CHAIN", v[0])
		t.Setenv("NEXMUX_FAMILIES", v[1])
		t.Setenv("NEXMUX_JUMPS", v[2])
		if out, errs, code := run(t, args...); code != 0 || !strings.Contains(out, "team-a.example.com") {
			t.Errorf("check with %q: exit %d\n%s%s", v, code, out, errs)
		}
	}
}

// serve ignores the iptables keys of the file it shares with `nexmux
// iptables` (README, Legacy connector ports), a value that does not parse
// as well as one that iptables would refuse: `jumps: maybe` stopped serve.
func TestServeIgnoresIptablesKeys(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "c.yaml")
	body := "cert: [" + crt + "]\nkey: [" + key + "]\nroute: [team-a.example.com=team-a]\n" +
		"chain: PREROUTING\nfamilies: [nft]\njumps: maybe\nload: often\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	app := &cli.App{Commands: []*cli.Command{{Name: "serve", Flags: configFlags("serve"),
		Action: func(c *cli.Context) error { _, err = build(c); return nil }}}}
	if rerr := runApp(app, []string{"nexmux", "serve", "--config", file}); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Errorf("serve refused a configuration over its iptables keys:\n%v", err)
	}
	// check still reports them.
	_, errs, code := run(t, "check", "--config", file)
	for _, want := range []string{`jumps: line 6: "maybe"`, `load: line 7: "often"`} {
		if code != exitInvalid || !strings.Contains(errs, want) {
			t.Errorf("check: exit %d, stderr lacks %q:\n%s", code, want, errs)
		}
	}
}

// Retiring a deployment, the config file may be gone before the rules:
// --delete then removes the chain given by --chain or NEXMUX_CHAIN, with a
// warning. Without one it is refused, and the error says what to give:
// the file may have named another chain, and the default one's rules may
// be another instance's.
func TestIptablesDeleteWithoutItsConfigFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "gone.yaml")
	for _, file := range []string{missing, dir} { // missing, and unreadable as a file
		out, errs, code := run(t, "iptables", "--delete", "--config", file, "--chain", "NX-OLD")
		if code != 0 || !strings.Contains(out, "-X NX-OLD") || !strings.Contains(errs, "config "+file) || !strings.Contains(errs, "ignored by --delete") {
			t.Errorf("--delete --chain, config %s unreadable: exit %d\n%s%s", file, code, out, errs)
		}
	}
	t.Setenv("NEXMUX_CHAIN", "NX-ENV")
	if out, errs, code := run(t, "iptables", "--delete", "--config", missing); code != 0 || !strings.Contains(out, "-X NX-ENV") {
		t.Errorf("--delete with NEXMUX_CHAIN, config missing: exit %d\n%s%s", code, out, errs)
	}
	t.Setenv("NEXMUX_CHAIN", "")
	// No chain given: refused, saying how to delete without the file.
	out, errs, code := run(t, "iptables", "--delete", "--load", "--config", missing)
	if code != exitInvalid || out != "" {
		t.Fatalf("--delete without a chain, config missing: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"config " + missing, "no such file", "--chain", "nexmux iptables --load --delete --chain NEXMUX"} {
		if !strings.Contains(errs, want) {
			t.Errorf("--delete without a chain: stderr lacks %q:\n%s", want, errs)
		}
	}
	// What --delete reads is still checked, and applying still needs the file.
	if _, errs, code := run(t, "iptables", "--delete", "--config", missing, "--chain", "bad!", "--families", "nft"); code != exitInvalid || !strings.Contains(errs, `chain "bad!"`) || !strings.Contains(errs, `family "nft"`) {
		t.Errorf("--delete with a bad chain, config missing: exit %d\n%s", code, errs)
	}
	if out, errs, code := run(t, "iptables", "--config", missing, "--chain", "NX-OLD", "--port", "8082=a"); code != exitInvalid || out != "" || !strings.Contains(errs, "no such file") {
		t.Errorf("apply, config missing: exit %d\n%s%s", code, out, errs)
	}
}

// An empty --chain (a script's "--chain $CHAIN" with CHAIN unset) names no
// chain: without the config file, --delete must refuse it as it refuses no
// --chain, not remove the default chain's rules, perhaps another
// instance's.
func TestIptablesDeleteWithoutItsConfigFileEmptyChain(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone.yaml")
	out, errs, code := run(t, "iptables", "--delete", "--config", missing, "--chain", "")
	if code != exitInvalid || out != "" || !strings.Contains(errs, "--chain") {
		t.Fatalf("--delete --chain \"\", config missing: exit %d, want %d and nothing removed\n%s%s", code, exitInvalid, out, errs)
	}
}

// An empty --chain with the config file readable names no chain either: it
// must not replace the file's chain by the default one, whose rules --load
// would rewrite and --delete remove (perhaps another instance's). A file's
// chain: "" is the same empty value; check reports it as iptables does.
func TestIptablesEmptyChainDoesNotReplaceTheFilesChain(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("chain: NX-B\nport: [\"8082=team-a\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"iptables", "--config", file, "--delete", "--chain", ""},
		{"iptables", "--config", file, "--chain", ""},
		{"iptables", "--port", "8082=team-a", "--chain", ""},
		{"check", "--config", file, "--chain", "", "--cert", crt, "--key", key, "--route", "a.example.com=r"},
	} {
		out, errs, code := run(t, args...)
		if code != exitInvalid || out != "" || !strings.Contains(errs, `chain "": no chain named`) {
			t.Errorf("%q: exit %d, want %d and nothing printed:\n%s%s", args, code, exitInvalid, out, errs)
		}
	}
	if err := os.WriteFile(file, []byte("chain: \"\"\nport: [\"8082=team-a\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runRefused(t, "chain: \"\"", []string{"iptables", "--config", file}, `chain "": no chain named`, "(from config "+file+" line 1)")
	// Under a --chain too: the file's values are checked all the same.
	runRefused(t, "chain: \"\" under --chain", []string{"iptables", "--config", file, "--chain", "NX-C"}, `chain "": no chain named`, "(from config "+file+" line 1, a value --chain or NEXMUX_CHAIN overrides")
	// An empty variable is unset, as ever: the file's chain.
	if err := os.WriteFile(file, []byte("chain: NX-B\nport: [\"8082=team-a\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEXMUX_CHAIN", "")
	if out, errs, code := run(t, "iptables", "--config", file); code != 0 || !strings.Contains(out, "-N NX-B\n") {
		t.Errorf("NEXMUX_CHAIN empty: exit %d\n%s%s", code, out, errs)
	}
}

// Refused for want of a chain, --delete without its file still lists every
// problem of what it was given at once: a bad --families too, not only
// once the chain is named.
func TestIptablesDeleteWithoutItsConfigFileEveryProblem(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone.yaml")
	_, errs, code := run(t, "iptables", "--delete", "--config", missing, "--families", "nft")
	for _, want := range []string{"--chain", `family "nft"`} {
		if code != exitInvalid || !strings.Contains(errs, want) {
			t.Errorf("--delete --families nft, no chain, config missing: exit %d, stderr lacks %q:\n%s", code, want, errs)
		}
	}
}

// iptables (applying, not --delete) with its config file unreadable still
// checks what the command line and environment give, as check does: a bad
// --port, --listen, --chain or --families came only once the file was
// back. A port route is not compared with the default listen port, which
// the file may have changed.
func TestIptablesUnreadableFileListsTheOtherProblemsToo(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone.yaml")
	_, errs, code := run(t, "iptables", "--config", missing, "--port", "bad", "--listen", ":x", "--chain", "PREROUTING", "--families", "nft")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{missing, `port "bad"`, `listen ":x"`, `chain "PREROUTING" is a built-in chain`, `family "nft"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	_, errs, code = run(t, "iptables", "--config", missing, "--port", "8443=team-a")
	if code != exitInvalid || !strings.Contains(errs, missing) || strings.Contains(errs, "listen port") {
		t.Errorf("--port 8443=team-a, listen from the missing file: exit %d, want the file alone:\n%s", code, errs)
	}
}

// Every certificate and key path that cannot be read is named in the one
// run, the key of a pair whose certificate is missing too, and a --cert
// left without a --key: a script fixing its mounts one run at a time
// learnt of a second wrong path only after fixing the first.
func TestEveryUnreadableCertificatePathListed(t *testing.T) {
	dir := t.TempDir()
	c1, k1, c2 := filepath.Join(dir, "one.crt"), filepath.Join(dir, "one.key"), filepath.Join(dir, "two.crt")
	_, errs, code := run(t, "check", "--route", "a.example.com=r", "--cert", c1, "--key", k1, "--cert", c2)
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{"1 --key", "open " + c1, "open " + k1, "open " + c2} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

// check's table names what each certificate serves, its IP addresses too:
// a pair naming only IP addresses (for --default-route) showed as
// "certificates: " with nothing after it, as if none were loaded.
func TestCheckNamesCertificateIPAddresses(t *testing.T) {
	ca, err := certs.NewCA("cli test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue("127.0.0.1", "::1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "ip.pem"), filepath.Join(dir, "ip.key")
	if err := p.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--default-route", "r")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errs)
	}
	if !strings.Contains(out, "certificates: 127.0.0.1, ::1\n") {
		t.Errorf("check does not name the certificate's addresses:\n%s", out)
	}
}

// The same pair given twice (a file's cert list and a flag, a copied
// line) listed each of its names twice; the addresses were listed once.
func TestCheckNamesEachCertificateNameOnce(t *testing.T) {
	crt, key := certFiles(t)
	out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--cert", crt, "--key", key, "--route", "a.example.com=r")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errs)
	}
	_, line, _ := strings.Cut(out, "certificates: ")
	line, _, _ = strings.Cut(line, "\n")
	names := strings.Split(line, ", ")
	for i, n := range names {
		if slices.Contains(names[:i], n) {
			t.Errorf("check lists %q twice: certificates: %s", n, line)
		}
	}
}

// A key of the config file that a flag or its environment variable also
// sets is not used (flag > env > file): said as a warning, or an edit of
// that key in a mounted ConfigMap reloads "fine" and changes nothing.
func TestFileKeyOverriddenIsAWarning(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("route: [team-a.example.com=team-a]\nmax-conns: 1000\nlog-level: info\nidle-timeout:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"check", "--config", file, "--cert", crt, "--key", key}
	if _, errs, code := run(t, base...); code != 0 || strings.Contains(errs, "overridden") {
		t.Fatalf("nothing overridden: exit %d, stderr:\n%s", code, errs)
	}
	_, errs, code := run(t, append(base, "--max-conns", "2000", "--idle-timeout", "1m")...)
	if code != 0 || !strings.Contains(errs, "warning: config "+file+": max-conns is overridden by --max-conns or NEXMUX_MAX_CONNS") {
		t.Errorf("flag over a file key: exit %d, stderr:\n%s", code, errs)
	}
	// An empty key in the file gives nothing to override.
	if strings.Contains(errs, "idle-timeout is overridden") {
		t.Errorf("an empty file key drew the warning:\n%s", errs)
	}
	t.Setenv("NEXMUX_LOG_LEVEL", "debug")
	if _, errs, code := run(t, base...); code != 0 || !strings.Contains(errs, "log-level is overridden by --log-level or NEXMUX_LOG_LEVEL") || strings.Count(errs, "overridden") != 1 {
		t.Errorf("environment over a file key: exit %d, stderr:\n%s", code, errs)
	}
}

// A config file that cannot be read is one problem; the command line's
// and the environment's bad values are listed with it, in the same run.
// What the file may have given (routes, a certificate, the other half of
// a pair of settings) is not asked for: that would be noise.
func TestUnreadableFileListsTheOtherProblemsToo(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	t.Setenv("NEXMUX_LOG_FORMAT", "xml")
	_, errs, code := run(t, "check", "--config", missing, "--listen", "bogus", "--max-conns", "-5",
		"--socks5-auth-file", t.TempDir(), "--upstream", "ftp://nexus:21") // a directory: unreadable
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{missing, "listen", "max-conns -5", "log-format", "ftp", "socks5-auth-file"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	for _, noise := range []string{"no routes", "no certificate", "socks5-listen is not"} {
		if strings.Contains(errs, noise) {
			t.Errorf("stderr has %q, which the file may have given:\n%s", noise, errs)
		}
	}
}

// check reports the iptables settings the command line and environment
// give (TestCheckReportsIptablesSettings) when the config file cannot be
// read too: a bad --chain or NEXMUX_FAMILIES was named only once the file
// was back.
func TestUnreadableFileListsIptablesProblemsToo(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	t.Setenv("NEXMUX_FAMILIES", "iptables,nft")
	_, errs, code := run(t, "check", "--config", missing, "--chain", "PREROUTING")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{missing, `chain "PREROUTING" is a built-in chain`, `family "nft"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

// With the config file unreadable, a port route is not compared with the
// default listen port: the file may have named another (listen: ":9443"),
// and "8443 is the --listen port" sent the reader to move a route that was
// fine. Given on the command line, the listen port is compared.
func TestUnreadableFileLeavesTheListenPortOpen(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	_, errs, code := run(t, "check", "--config", missing, "--port", "8443=team-a")
	if code != exitInvalid || !strings.Contains(errs, missing) || strings.Contains(errs, "listen port") {
		t.Errorf("--port 8443=team-a, listen from the missing file: exit %d, want the file alone:\n%s", code, errs)
	}
	_, errs, _ = run(t, "check", "--config", missing, "--port", "8443=team-a", "--listen", ":8443")
	if !strings.Contains(errs, "8443 is the --listen port") {
		t.Errorf("--port 8443=team-a --listen :8443: the clash is not named:\n%s", errs)
	}
}

// With the config file unreadable, a setting whose other half the file may
// give is not refused for the want of it (README: "the other half of a pair
// of settings"): a --key whose --cert the file names, a --drain-upstream
// node among the file's --upstream. A path given that cannot be read is
// still named.
func TestUnreadableFileAsksForNoOtherHalf(t *testing.T) {
	_, key := certFiles(t)
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	_, errs, code := run(t, "check", "--config", missing, "--key", key, "--key", "/nonexistent.key", "--drain-upstream", "http://nexus-1:8081")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{missing, "/nonexistent.key"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	for _, noise := range []string{"paired by position", "not one of the --upstream nodes"} {
		if strings.Contains(errs, noise) {
			t.Errorf("stderr has %q, whose other half the file may have given:\n%s", noise, errs)
		}
	}
}

// A bad value that came from the environment says so, whatever its type:
// the flag's name alone sends the reader to a command line that lacks it.
func TestBadEnvValuesNameTheirVariable(t *testing.T) {
	crt, key := certFiles(t)
	t.Setenv("NEXMUX_LISTEN", "bogus")
	t.Setenv("NEXMUX_ROUTE", "bad")
	t.Setenv("NEXMUX_MAX_CONNS_PER_CLIENT", "-3")
	_, errs, code := run(t, "check", "--cert", crt, "--key", key, "--max-conns", "-5")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{`listen "bogus"`, `route "bad"`, `max-conns-per-client -3`} {
		line := ""
		for _, l := range strings.Split(errs, "\n") {
			if strings.Contains(l, want) {
				line = l
			}
		}
		if env := config.EnvVar(strings.Fields(want)[0]); !strings.HasSuffix(line, "(from "+env+")") {
			t.Errorf("the line of %s does not end with (from %s): %q\n%s", want, env, line, errs)
		}
	}
	if !strings.Contains(errs, "max-conns -5: must not be negative\n") {
		t.Errorf("the command line's value is not listed plainly:\n%s", errs)
	}
	// The command line over the environment: its value is the flag's.
	_, errs, _ = run(t, "check", "--cert", crt, "--key", key, "--listen", "also-bad")
	if !strings.Contains(errs, `listen "also-bad"`) || strings.Contains(errs, "NEXMUX_LISTEN") {
		t.Errorf("a flag's value blamed on the environment:\n%s", errs)
	}
}

// A clash of two hosts names the variable of the setting it clashes with
// too: NEXMUX_ROUTE routing a --mirror host was refused as "already
// routed" with nothing to say the route was not on the command line. A
// clash with a setting the command line gave names no variable.
func TestHostClashNamesTheOtherVariable(t *testing.T) {
	crt, key := certFiles(t)
	for _, tc := range []struct{ env, val, other string }{
		{"NEXMUX_ROUTE", "m.example.com=a", "route"},
		{"NEXMUX_PASSTHROUGH", "m.example.com=10.0.0.1:443", "passthrough"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(tc.env, tc.val)
			_, errs, code := run(t, "check", "--cert", crt, "--key", key, "--mirror", "m.example.com/docker.io=hub")
			if code != exitInvalid {
				t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
			}
			if l := lineOf(t, errs, "mirror m.example.com"); !strings.Contains(l, tc.env) {
				t.Errorf("the clash with %s does not name %s: %q\n%s", tc.other, tc.env, l, errs)
			}
		})
	}
	// The mirror from the environment, the route from the command line.
	t.Setenv("NEXMUX_MIRROR", "m.example.com/docker.io=hub")
	_, errs, _ := run(t, "check", "--cert", crt, "--key", key, "--route", "m.example.com=a")
	if l := lineOf(t, errs, "mirror m.example.com"); !strings.HasSuffix(l, "(from NEXMUX_MIRROR)") || strings.Contains(l, "NEXMUX_ROUTE") {
		t.Errorf("want the line to end with (from NEXMUX_MIRROR) alone: %q\n%s", l, errs)
	}
}

// Two listen settings on one address: the problem names the variable of
// the other one too when the environment gave it.
func TestListenClashNamesTheOtherVariable(t *testing.T) {
	crt, key := certFiles(t)
	t.Setenv("NEXMUX_LISTEN", "127.0.0.1:46510")
	_, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=a", "--metrics-listen", "127.0.0.1:46510")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, l := range strings.Split(errs, "\n") {
		if strings.Contains(l, "the same address as listen") && !strings.Contains(l, "NEXMUX_LISTEN") {
			t.Errorf("the clash with listen does not name NEXMUX_LISTEN: %q", l)
		}
	}
	if !strings.Contains(errs, "the same address as listen") {
		t.Errorf("no clash reported:\n%s", errs)
	}
}

// A problem of a --port with another setting (a REDIRECT that captures
// another listener's port or loops back to an --upstream or a passthrough
// backend), and a route name no --cert covers, name the variable of each
// setting the environment gave, as a clash does: NEXMUX_PORT or
// NEXMUX_CERT went unnamed, and the command line did not hold it.
func TestPortAndCertProblemsNameTheirVariable(t *testing.T) {
	crt, key := certFiles(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string   // the problem's line holds it
		from []string // and each of these
	}{
		{"port capturing metrics", map[string]string{"NEXMUX_PORT": "9090=team-b"}, []string{"--listen", ":8443", "--metrics-listen", "127.0.0.1:9090"},
			"port 9090 is the metrics-listen port", []string{"(from NEXMUX_PORT)"}},
		{"metrics captured", map[string]string{"NEXMUX_METRICS_LISTEN": "127.0.0.1:9090"}, []string{"--listen", ":8443", "--port", "9090=team-b"},
			"port 9090 is the metrics-listen port", []string{"(--metrics-listen from NEXMUX_METRICS_LISTEN)"}},
		{"upstream loop", map[string]string{"NEXMUX_PORT": "8082=team-a"}, []string{"--listen", ":8443", "--upstream", "http://127.0.0.1:8082"},
			"upstream http://127.0.0.1:8082 is on this host, at port 8082", []string{"(--port from NEXMUX_PORT)"}},
		{"passthrough loop", map[string]string{"NEXMUX_PORT": "8082=team-a"}, []string{"--listen", ":8443", "--passthrough", "legacy.example.com=127.0.0.1:8082"},
			"passthrough legacy.example.com=127.0.0.1:8082: 127.0.0.1:8082 is on this host", []string{"(--port from NEXMUX_PORT)"}},
		{"no cert covers", map[string]string{"NEXMUX_CERT": crt, "NEXMUX_KEY": key}, []string{"--route", "a.other.org=team-a"},
			"route a.other.org: no --cert covers this name", []string{"(--cert from NEXMUX_CERT)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, errs, _ := run(t, append([]string{"check"}, tc.args...)...)
			l := lineOf(t, errs, tc.want)
			for _, f := range tc.from {
				if !strings.Contains(l, f) {
					t.Errorf("check: the line of %q lacks %s: %q", tc.want, f, l)
				}
			}
		})
	}
	// nexmux iptables refuses the same loop, and names the variable too.
	t.Setenv("NEXMUX_PORT", "8082=team-a")
	_, errs, code := run(t, "iptables", "--listen", ":8443", "--upstream", "http://127.0.0.1:8082")
	if code != exitInvalid {
		t.Fatalf("iptables: exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	if l := lineOf(t, errs, "upstream http://127.0.0.1:8082 is on this host"); !strings.Contains(l, "(--port from NEXMUX_PORT)") {
		t.Errorf("iptables: the loop's line lacks (--port from NEXMUX_PORT): %q", l)
	}
}

// The iptables settings' problems, and every problem of nexmux iptables,
// name the variable a bad value came from too (README: "whatever the
// setting's type"): NEXMUX_CHAIN=PREROUTING was refused without it.
func TestIptablesEnvValuesNameTheirVariable(t *testing.T) {
	t.Setenv("NEXMUX_CHAIN", "PREROUTING")
	t.Setenv("NEXMUX_FAMILIES", "iptables,nft")
	endsWith := func(cmd, errs, want, env string) {
		t.Helper()
		for _, l := range strings.Split(errs, "\n") {
			if strings.Contains(l, want) {
				if !strings.HasSuffix(l, "(from "+env+")") {
					t.Errorf("%s: the line of %s does not end with (from %s): %q", cmd, want, env, l)
				}
				return
			}
		}
		t.Errorf("%s: stderr lacks %q:\n%s", cmd, want, errs)
	}
	_, errs, code := run(t, "check", "--port", "8082=team-a")
	if code != exitInvalid {
		t.Fatalf("check: exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	endsWith("check", errs, `chain "PREROUTING"`, "NEXMUX_CHAIN")
	endsWith("check", errs, `family "nft"`, "NEXMUX_FAMILIES")
	t.Setenv("NEXMUX_PORT", "bad")
	t.Setenv("NEXMUX_LISTEN", ":x")
	_, errs, code = run(t, "iptables")
	if code != exitInvalid {
		t.Fatalf("iptables: exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	endsWith("iptables", errs, `chain "PREROUTING"`, "NEXMUX_CHAIN")
	endsWith("iptables", errs, `family "nft"`, "NEXMUX_FAMILIES")
	endsWith("iptables", errs, `port "bad"`, "NEXMUX_PORT")
	endsWith("iptables", errs, `listen ":x"`, "NEXMUX_LISTEN")
}

// --config given twice is a problem, listed with the rest: a second file
// would silently replace the first and every route it held.
func TestSecondConfigFileIsAProblem(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	for _, f := range []string{a, b} {
		if err := os.WriteFile(f, []byte("route: [team-a.example.com=team-a]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, errs, code := run(t, "check", "--config", a, "--config="+b, "--cert", crt, "--key", key, "--max-conns", "-5")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{"--config given 2 times", a, b, "max-conns -5"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	// The command line's one file over the environment's is no repeat.
	t.Setenv("NEXMUX_CONFIG", a)
	if _, errs, code := run(t, "check", "--config", b, "--cert", crt, "--key", key); code != 0 || strings.Contains(errs, "times") {
		t.Errorf("--config over NEXMUX_CONFIG: exit %d, stderr:\n%s", code, errs)
	}
	if _, errs, code := run(t, "check", "--cert", crt, "--key", key); code != 0 {
		t.Errorf("NEXMUX_CONFIG alone: exit %d, stderr:\n%s", code, errs)
	}
}

// The rules `nexmux iptables` prints go to iptables-restore or a file, and
// check's description to a file too: output cut short by a failed write (a
// full disk, a closed pipe) is exit 1 with the reason, never exit 0.
func TestFailedWriteOfOutputIsAnError(t *testing.T) {
	crt, key := certFiles(t)
	for name, args := range map[string][]string{
		"iptables": {"iptables", "--listen", ":8443", "--port", "8082=team-a"},
		"delete":   {"iptables", "--delete"},
		"check":    {"check", "--route", "team-a.example.com=team-a", "--cert", crt, "--key", key},
		"version":  {"version"},
	} {
		code, errs := runToFullDisk(t, args...)
		if code != 1 || !strings.Contains(errs, "no space left") {
			t.Errorf("%s, output cut after 10 bytes: exit %d:\n%s", name, code, errs)
		}
	}
}

// With port routes alone and no certificate, check says there is none
// and what that means, not "certificates: " with nothing after it.
func TestCheckSaysNoCertificates(t *testing.T) {
	out, errs, code := run(t, "check", "--port", "8082=team-a")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errs)
	}
	if !strings.Contains(out, "certificates: none (port routes serve plain HTTP only)\n") {
		t.Errorf("check does not say there is no certificate:\n%s", out)
	}
}

// The REDIRECT rules take a --port's port on every local address, so a
// port route on the port of --metrics-listen or --socks5-listen would send
// /healthz, /metrics or the SOCKS5 clients to the listener and that port's
// repository (the probes then fail). nexmux iptables refuses to write such a
// rule; check and serve, which may serve port routes without iptables (a
// PROXY header's port, --bind-ports), warn.
func TestIptablesRefusesPortOfAnotherListener(t *testing.T) {
	for _, tc := range []struct{ flag, addr, port string }{
		{"--metrics-listen", "127.0.0.1:9090", "9090"},
		{"--metrics-listen", ":9090", "9090"},
		{"--socks5-listen", "[::1]:1080", "1080"},
	} {
		args := []string{"--listen", ":8443", "--port", "8082=team-a", "--port", tc.port + "=team-b", tc.flag, tc.addr}
		want := "port " + tc.port + " is the " + strings.TrimPrefix(tc.flag, "--") + " port"
		out, errs, code := run(t, append([]string{"iptables"}, args...)...)
		if code != exitInvalid || out != "" || !strings.Contains(errs, want) {
			t.Errorf("iptables %q: exit %d, want %d and %q:\n%s%s", args, code, exitInvalid, want, out, errs)
		}
		// Removing the rules needs none of that.
		if out, errs, code := run(t, append([]string{"iptables", "--delete"}, args...)...); code != 0 || !strings.Contains(out, "-X NEXMUX") {
			t.Errorf("iptables --delete %q: exit %d:\n%s%s", args, code, out, errs)
		}
		out, errs, code = run(t, append([]string{"check"}, args...)...)
		if code != 0 || !strings.Contains(errs, "nexmux: warning: "+want) {
			t.Errorf("check %q: exit %d, want 0 and a warning %q:\n%s%s", args, code, want, out, errs)
		}
	}
	// Other ports, and --bind-ports (no rules; a clash of addresses is
	// check's listen-clash error), draw nothing.
	for _, args := range [][]string{
		{"--listen", ":8443", "--port", "8082=team-a", "--metrics-listen", "127.0.0.1:9090", "--socks5-listen", ":1080"},
		{"--listen", "192.0.2.1:8443", "--bind-ports", "--port", "9090=team-a", "--metrics-listen", "127.0.0.1:9090"},
	} {
		if out, errs, code := run(t, append([]string{"check"}, args...)...); code != 0 || errs != "" {
			t.Errorf("check %q: exit %d:\n%s%s", args, code, out, errs)
		}
	}
	if out, errs, code := run(t, "iptables", "--listen", ":8443", "--port", "8082=team-a", "--metrics-listen", ":9090"); code != 0 || !strings.Contains(out, "--dport 8082 ") {
		t.Errorf("iptables with metrics on another port: exit %d:\n%s%s", code, out, errs)
	}
}

// With --bind-ports nexmux listens on the --port ports itself: REDIRECT
// rules for them are not needed, and loaded they would take those ports'
// connections from nexmux's own listeners to --listen. nexmux iptables
// refuses to print or load them, whichever way bind-ports was set, with
// every other problem; --delete, to retire rules loaded before the switch,
// still works. check passes the same configuration: it is serve's.
func TestIptablesRefusesRulesWithBindPorts(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("listen: \":8443\"\nport: [\"8082=team-a\"]\nbind-ports: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "bind-ports: nexmux binds the --port ports itself: they need no REDIRECT rules"
	// --load must not reach this host's nat table: the commands it would
	// run are stand-ins that say they ran.
	fake := t.TempDir()
	for _, cmd := range []string{"iptables", "ip6tables", "iptables-restore", "ip6tables-restore"} {
		if err := os.WriteFile(filepath.Join(fake, cmd), []byte("#!/bin/sh\necho \"stand-in $0 ran\" >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", fake)
	for _, tc := range []struct {
		name string
		env  bool
		args []string
		from string
	}{
		{"flag", false, []string{"--listen", ":8443", "--port", "8082=team-a", "--bind-ports"}, ""},
		{"flag --load", false, []string{"--listen", ":8443", "--port", "8082=team-a", "--bind-ports", "--load"}, ""},
		{"file", false, []string{"--config", file}, "(from config " + file + " line 3)"},
		{"file --load --jumps=false", false, []string{"--config", file, "--load", "--jumps=false"}, "(from config " + file + " line 3)"},
		{"environment", true, []string{"--listen", ":8443", "--port", "8082=team-a"}, "(from NEXMUX_BIND_PORTS)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env {
				t.Setenv("NEXMUX_BIND_PORTS", "true")
			}
			out, errs, code := run(t, append([]string{"iptables"}, tc.args...)...)
			if code != exitInvalid || out != "" || !strings.Contains(errs, want) || !strings.Contains(errs, tc.from) ||
				!strings.Contains(errs, "nexmux iptables --load --delete") {
				t.Errorf("exit %d, want %d, no rules and %q %s:\n%s%s", code, exitInvalid, want, tc.from, out, errs)
			}
			// Listed with the others.
			out, errs, code = run(t, append([]string{"iptables"}, append(tc.args, "--chain", "OUTPUT")...)...)
			if code != exitInvalid || out != "" || !strings.Contains(errs, want) || !strings.Contains(errs, "built-in chain") {
				t.Errorf("with a bad chain: exit %d, want both problems:\n%s%s", code, out, errs)
			}
			// Removing the rules loaded before --bind-ports is still
			// possible: printed, or loaded (the stand-ins run).
			out, errs, code = run(t, append([]string{"iptables", "--delete"}, tc.args...)...)
			if strings.Contains(strings.Join(tc.args, " "), "--load") {
				if code != 1 || !strings.Contains(errs, "stand-in") || strings.Contains(errs, "bind-ports") {
					t.Errorf("--load --delete: exit %d, want the stand-in iptables run:\n%s%s", code, out, errs)
				}
			} else if code != 0 || !strings.Contains(out, "-X NEXMUX") {
				t.Errorf("--delete: exit %d:\n%s%s", code, out, errs)
			}
		})
	}
	crt, key := certFiles(t)
	if out, errs, code := run(t, "check", "--config", file, "--cert", crt, "--key", key); code != 0 || strings.Contains(errs, "bind-ports") {
		t.Errorf("check: exit %d:\n%s%s", code, out, errs)
	}
}

// A number in any setting is written plainly: strconv.Atoi took
// "--port +8082=team-x" as port 8082, and ":+8443", "08082" or "-0" as
// ports too. Each lax spelling, from a flag, the environment or a file, is
// listed with every other problem, and nexmux iptables refuses it too.
func TestLaxNumbersListedWithEveryOtherProblem(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("max-conns-per-client: +8\nmetrics-listen: \"127.0.0.1:09090\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEXMUX_IDLE_TIMEOUT", "+30s")
	t.Setenv("NEXMUX_SOCKS5_LISTEN", "127.0.0.1:-0")
	_, errs, code := run(t, "check", "--config", file, "--cert", crt, "--key", key, "--route", "a.example.com=team-a",
		"--port", "+8082=team-x", "--listen", ":+8443", "--max-conns", "+5",
		"--passthrough", "legacy.example.com=127.0.0.1:0444", "--upstream", "http://127.0.0.1:08081")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{`port "+8082=team-x": "+8082" is not a port number`, `listen ":+8443"`, `max-conns "+5"`,
		`idle-timeout "+30s" (from NEXMUX_IDLE_TIMEOUT)`, `socks5-listen "127.0.0.1:-0"`, `max-conns-per-client: line 1: "+8"`,
		`metrics-listen "127.0.0.1:09090"`, `"0444" is not a port`, `upstream "http://127.0.0.1:08081"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if out, errs, code := run(t, "iptables", "--listen", ":8443", "--port", "+8082=team-x", "--port", "08083=team-y"); code != exitInvalid || out != "" ||
		!strings.Contains(errs, `"+8082" is not a port number`) || !strings.Contains(errs, `"08083" is not a port number`) {
		t.Errorf("iptables: exit %d, want %d and both ports refused:\n%s%s", code, exitInvalid, out, errs)
	}
}

// An --upstream node or a passthrough backend on this host at a --port
// port: the rules' OUTPUT REDIRECT would send nexmux's own connections to
// it back to nexmux's listener (internal/daemon's
// TestNetnsUpstreamOnARedirectedPortLoops shows the loop). nexmux iptables
// refuses to write those rules, as it refuses a --port on the metrics
// port; check warns, since port routes also work without them.
func TestIptablesRefusesALoopToALocalBackend(t *testing.T) {
	crt, key := certFiles(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--upstream", "http://127.0.0.1:8082"}, "upstream http://127.0.0.1:8082 is on this host, at port 8082 of a --port route"},
		{[]string{"--upstream", "http://localhost:8083"}, "upstream http://localhost:8083 is on this host, at port 8083 of a --port route"},
		{[]string{"--passthrough", "legacy.example.com=127.0.0.1:8082"}, "passthrough legacy.example.com=127.0.0.1:8082: 127.0.0.1:8082 is on this host"},
	} {
		args := append([]string{"--listen", ":8443", "--port", "8082=team-a", "--port", "8083=team-b"}, tc.args...)
		out, errs, code := run(t, append([]string{"iptables"}, args...)...)
		if code != exitInvalid || out != "" || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "loop") {
			t.Errorf("iptables %q: exit %d, want %d and %q:\n%s%s", args, code, exitInvalid, tc.want, out, errs)
		}
		// Removing the rules needs none of that.
		if out, errs, code := run(t, append([]string{"iptables", "--delete"}, args...)...); code != 0 || !strings.Contains(out, "-X NEXMUX") {
			t.Errorf("iptables --delete %q: exit %d:\n%s%s", args, code, out, errs)
		}
		out, errs, code = run(t, append([]string{"check", "--cert", crt, "--key", key, "--route", "a.example.com=team-a"}, args...)...)
		if code != 0 || !strings.Contains(errs, "nexmux: warning: "+tc.want) {
			t.Errorf("check %q: exit %d, want 0 and a warning %q:\n%s%s", args, code, tc.want, out, errs)
		}
	}
	// The default --upstream, http://127.0.0.1:8081, is on this host too.
	if out, errs, code := run(t, "iptables", "--listen", ":8443", "--port", "8081=team-a"); code != exitInvalid || !strings.Contains(errs, "upstream http://127.0.0.1:8081 is on this host") {
		t.Errorf("iptables --port 8081 with the default upstream: exit %d:\n%s%s", code, out, errs)
	}
	// Another host's node on that port is no loop: the rules only take
	// local destinations.
	if out, errs, code := run(t, "iptables", "--listen", ":8443", "--port", "8082=team-a", "--upstream", "http://192.0.2.250:8082"); code != 0 || !strings.Contains(out, "--dport 8082 ") {
		t.Errorf("iptables with a remote node on the port: exit %d:\n%s%s", code, out, errs)
	}
}

// A warning check prints names the config file as given: one whose name
// holds a line break must still make one line, not a second one that
// reads like a log line.
func TestWarningNamingAFileWithALineBreakIsOneLine(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "nexmux\nlevel=ERROR msg=forged.yaml")
	if err := os.WriteFile(file, []byte("route: [team-a.example.com=team-a]\nmax-conns: 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "check", "--config", file, "--cert", crt, "--key", key, "--max-conns", "2000")
	if code != 0 || !strings.Contains(errs, "max-conns is overridden") {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	for _, l := range strings.Split(errs, "\n") {
		if strings.HasPrefix(l, "level=") {
			t.Errorf("a line of its own from the file name: %q", l)
		}
	}
}

// A URL with credentials given to the wrong setting is echoed in the
// refusal with its userinfo hidden, whatever the setting, wherever it was
// given (flag, environment, file) and however the problem quotes it (the
// value, a part of it, the dialer's or the file system's own error): check
// and serve printed the password.
func TestEchoedCredentialsHidden(t *testing.T) {
	crt, key := certFiles(t)
	const url = "http://admin:s3cret@nexus:8081"
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("idle-timeout: "+url+"\nsocks5-listen: admin:s3cret@nexus:8081\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEXMUX_MAX_CONN_AGE", url)
	t.Setenv("NEXMUX_METRICS_LISTEN", url)
	args := []string{"--config", file, "--cert", crt, "--key", key,
		"--listen", url, "--route", "a.example.com=r", "--route", "b.example.com=" + url,
		"--passthrough", "c.example.com=" + url, "--port", "8082=" + url, "--default-route", url,
		"--mirror", url, "--proxy-protocol-from", url, "--health-interval", url,
		"--affinity-secret-file", url, "--drain-upstream", url, "--log-level", "https://t0ken@nexus"}
	for _, cmd := range []string{"check", "serve"} {
		_, errs, code := run(t, append([]string{cmd}, args...)...)
		if code != exitInvalid {
			t.Fatalf("%s: exit %d, want %d:\n%s", cmd, code, exitInvalid, errs)
		}
		if strings.Contains(errs, "s3cret") || strings.Contains(errs, "t0ken") {
			t.Errorf("%s printed the credentials:\n%s", cmd, errs)
		}
		var missing []string
		for _, setting := range []string{"listen", "route", "passthrough", "port", "default-route", "mirror", "proxy-protocol-from",
			"health-interval", "affinity-secret-file", "drain-upstream", "log-level", "max-conn-age", "metrics-listen", "config " + file + ": idle-timeout", "socks5-listen"} {
			found := false
			for _, l := range strings.Split(errs, "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), setting+" ") || strings.HasPrefix(strings.TrimSpace(l), setting+":") {
					found = found || strings.Contains(l, "xxxxx@nexus")
				}
			}
			if !found {
				missing = append(missing, setting)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: no line of %s names the value with its userinfo hidden (xxxxx@nexus):\n%s", cmd, strings.Join(missing, ", "), errs)
		}
		// A part of the value is shown as it is, its userinfo alone hidden:
		// the '/' the problem names is still there to see.
		if !strings.Contains(errs, `repository name "//xxxxx@nexus:8081" has '/'`) {
			t.Errorf("%s: the part of the value the problem names is not shown with its userinfo alone hidden:\n%s", cmd, errs)
		}
	}
}

// A password holding a space or a quote is hidden too where a problem
// echoes the value bare (the dialer's "address ...: too many colons"),
// not only where it quotes it: the bare echo is no one word.
func TestEchoedPasswordWithSpaceHidden(t *testing.T) {
	for _, pw := range []string{"my s3cret", `my"s3cret`, "my's3cret x"} {
		_, errs, code := run(t, "check", "--upstream", "http://nexus:8081", "--listen", "127.0.0.1:45801",
			"--passthrough", "pt.example.com=admin:"+pw+"@backend:443")
		if code != exitInvalid {
			t.Fatalf("%q: exit %d, want %d:\n%s", pw, code, exitInvalid, errs)
		}
		if strings.Contains(errs, "s3cret") {
			t.Errorf("password %q printed:\n%s", pw, errs)
		}
	}
}

// A --key the environment gave is named as such (README: a bad value the
// environment gave ends with its variable's name): the problems of a
// certificate/key pair began with "cert", so a missing key file or an
// unpaired key from NEXMUX_KEY went unnamed, or was blamed on NEXMUX_CERT.
func TestBadEnvKeyNamesItsVariable(t *testing.T) {
	crt, key := certFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name, certEnv, keyEnv string
		args                  []string
		want, from            string
	}{
		{"key file missing", "", missing, []string{"--cert", crt}, `key "` + missing + `"`, "(from NEXMUX_KEY)"},
		{"both from the environment", crt, missing, nil, `key "` + missing + `"`, "(from NEXMUX_CERT and NEXMUX_KEY)"},
		{"a key too many", "", key + "," + key, []string{"--cert", crt}, "1 --cert but 2 --key", "(from NEXMUX_KEY)"},
		{"cert from the environment", missing, "", []string{"--key", key}, `cert "` + missing + `"`, "(from NEXMUX_CERT)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NEXMUX_CERT", tc.certEnv)
			t.Setenv("NEXMUX_KEY", tc.keyEnv)
			_, errs, code := run(t, append([]string{"check", "--route", "a.example.com=r"}, tc.args...)...)
			if code != exitInvalid {
				t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
			}
			if l := lineOf(t, errs, tc.want); !strings.HasSuffix(l, tc.from) {
				t.Errorf("the line of %s does not end with %s: %q", tc.want, tc.from, l)
			}
		})
	}
}

// lineOf is the first line of a command's stderr that holds want; a
// stderr without one fails t.
func lineOf(t *testing.T, errs, want string) string {
	t.Helper()
	for _, l := range strings.Split(errs, "\n") {
		if strings.Contains(l, want) {
			return l
		}
	}
	t.Errorf("stderr lacks %q:\n%s", want, errs)
	return ""
}

// A single-value flag given twice on the command line keeps the last, as
// most tools do and as scripts that append an override rely on, but says
// so, naming the flag and its values, where the two differ: the first may
// be what the operator thinks is running. The same value twice, and a
// repeatable flag's values, draw nothing.
func TestRepeatedSingleValueFlagWarned(t *testing.T) {
	crt, key := certFiles(t)
	out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=team-a", "--route", "b.example.com=team-b",
		"--listen", ":1111", "--listen=:2222", "--max-conns", "500", "-max-conns", "700",
		"--bind-ports", "--bind-ports=false", "--log-level", "info", "--log-level", "info")
	if code != 0 || !strings.Contains(out, "listen :2222") {
		t.Fatalf("exit %d, want 0 and the last --listen:\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		`warning: --listen given 2 times (":1111", ":2222"): the last, ":2222", is used`,
		`warning: --max-conns given 2 times ("500", "700"): the last, "700", is used`,
		`warning: --bind-ports given 2 times ("true", "false"): the last, "false", is used`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	for _, not := range []string{"--log-level given", "--route given", "--cert given"} {
		if strings.Contains(errs, not) {
			t.Errorf("stderr has %q:\n%s", not, errs)
		}
	}
	// Said where the configuration is refused too, and by iptables.
	if _, errs, code := run(t, "check", "--listen", ":1", "--listen", ":2"); code != exitInvalid || !strings.Contains(errs, `--listen given 2 times`) {
		t.Errorf("refused: exit %d, want %d and the warning:\n%s", code, exitInvalid, errs)
	}
	if _, errs, code := run(t, "iptables", "--port", "8082=r", "--chain", "NX-A", "--chain", "NX-B"); code != 0 || !strings.Contains(errs, `--chain given 2 times ("NX-A", "NX-B"): the last, "NX-B", is used`) {
		t.Errorf("iptables: exit %d, want 0 and the warning:\n%s", code, errs)
	}
}

// A value's syntax problem names what the flag takes with help's and the
// README table's placeholder (--route HOST=TARGET, --port PORT=TARGET), not
// a narrower one (HOST=REPO) that hides the pull:GROUP,push:HOSTED form; so
// do "no routes" and a route host holding a port.
func TestSyntaxProblemsUseTheHelpPlaceholder(t *testing.T) {
	table := readmeFlagsTable(t)
	crt, key := certFiles(t)
	_, errs, code := run(t, "check", "--cert", crt, "--key", key,
		"--route", "a.example.com", "--port", "8082", "--passthrough", "p.example.com", "--mirror", "m.example.com",
		"--route", "b.example.com:5000=r")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, name := range []string{"--route", "--port", "--passthrough", "--mirror"} {
		_, placeholder, _ := strings.Cut(table[name], " ")
		if placeholder == "" {
			t.Fatalf("README table has no placeholder for %s: %q", name, table[name])
		}
		if line := lineOf(t, errs, strings.TrimPrefix(name, "--")+` "`); !strings.Contains(line, "want "+placeholder) {
			t.Errorf("%s problem lacks %q, help's placeholder: %s", name, "want "+placeholder, line)
		}
	}
	if line := lineOf(t, errs, "b.example.com:5000"); !strings.Contains(line, "--port "+strings.TrimPrefix(table["--port"], "--port ")) {
		t.Errorf("host with a port does not name %q: %s", table["--port"], line)
	}
	_, errs, _ = run(t, "check", "--cert", crt, "--key", key)
	line := lineOf(t, errs, "no routes")
	for _, name := range []string{"--route", "--port", "--mirror", "--default-route"} {
		if !strings.Contains(line, table[name]) {
			t.Errorf("no routes: lacks %q: %s", table[name], line)
		}
	}
}

// A value longer than any setting takes (a file pasted into a variable, a
// runaway template) is a problem naming its setting, its length and its
// first bytes, from the file, a flag or the environment alike: echoed
// whole, one bad value made an error line of megabytes.
func TestOverlongValueNamedNotEchoed(t *testing.T) {
	long := strings.Repeat("a", 1<<20)
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("route: [\""+long+".example.com=r\"]\nlisten: \":"+long+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEXMUX_MAX_CONNS", strings.Repeat("9", 1<<20))
	t.Setenv("NEXMUX_STRIP_HEADER", "X-"+long)
	_, errs, code := run(t, "check", "--config", file, "--cert", "/"+long, "--key", "/k.pem")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d", code, exitInvalid)
	}
	if len(errs) > 8<<10 {
		t.Errorf("stderr of %d bytes for five overlong values, want them named, not echoed:\n%.2000s", len(errs), errs)
	}
	for _, name := range []string{"route", "listen", "cert", "max-conns", "strip-header"} {
		found := false
		for _, l := range strings.Split(errs, "\n") {
			if strings.Contains(l, name) && strings.Contains(l, "bytes") {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem names %s and its length:\n%.2000s", name, errs)
		}
	}
}

// A reload reads the file as the start does (serve's Reload is build, as
// its start is): an extension key parked for an anchor is ignored on
// SIGHUP too, an edit of the block it anchors reaches the settings merged
// from it, and a problem of one (given twice) refuses the reload with the
// start's words.
func TestExtensionKeysOnReload(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "c.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte("cert: ["+crt+"]\nkey: ["+key+"]\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("x-common: &common\n  max-conns: 7\n  route: [a.example.com=team-a]\n  x-note: anything\n<<: *common\nx-unused: {routes: nope}\n")
	var starts, reloads []*config.Runtime
	var errs []error
	app := &cli.App{Commands: []*cli.Command{{Name: "serve", Flags: configFlags("serve"),
		Action: func(c *cli.Context) error {
			read := func() (*config.Runtime, error) { return build(c) } // as serve's
			rt, err := read()
			starts, errs = append(starts, rt), append(errs, err)
			write("x-common: &common\n  max-conns: 9\n  route: [b.example.com=team-b]\n<<: *common\n")
			rt, err = read()
			reloads, errs = append(reloads, rt), append(errs, err)
			write("x-common: &common {max-conns: 9}\n<<: *common\nroute: [b.example.com=team-b]\nx-common: again\n")
			rt, err = read()
			reloads, errs = append(reloads, rt), append(errs, err)
			return nil
		}}}}
	if err := runApp(app, []string{"nexmux", "serve", "--config", file}); err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("start: %v; reload: %v", errs[0], errs[1])
	}
	for _, tc := range []struct {
		rt    *config.Runtime
		conns int
		route string
	}{{starts[0], 7, "a.example.com=team-a"}, {reloads[0], 9, "b.example.com=team-b"}} {
		if c := tc.rt.Config; c.MaxConns != tc.conns || !slices.Equal(c.Route, []string{tc.route}) {
			t.Errorf("max-conns %d, routes %q; want %d, [%s]", c.MaxConns, c.Route, tc.conns, tc.route)
		}
	}
	if want := `line 6: key "x-common" already defined at line 3`; errs[2] == nil || !strings.Contains(errs[2].Error(), want) {
		t.Errorf("reload of a file with x-common twice: %v; want %q", errs[2], want)
	}
}

// check names the flag an unknown file key may be a misspelling of, with
// every other problem, exit status 2.
func TestUnknownFileKeyNamesTheFlagMeant(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("routes: [a.example.com=team-a]\nmax_conns: 10\nlisten: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "check", "--config", file, "--cert", crt, "--key", key)
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for _, want := range []string{"line 1: field routes not found: keys are the long flag names (did you mean route?)",
		"line 2: field max_conns not found: keys are the long flag names (did you mean max-conns?)", `listen "x"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

// A flag given to a command that does not define it but another does
// (serve --chain, serve --nexus) says whose it is: "not defined" alone
// reads as a misspelling. It is still one problem among the others, exit
// status 2, as any unknown flag; a flag no command defines gets no note
// of whose it is (a misspelling's: TestMisspeltFlagNamesTheFlagMeant).
func TestFlagOfAnotherCommandNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--chain", "X", "--route", "bad"}, []string{"flag provided but not defined: --chain (a flag of nexmux iptables)\n", `route "bad"`}},
		{[]string{"serve", "--load", "--nexus=http://nexus:8081", "--route", "bad"}, []string{"flag provided but not defined: --load (a flag of nexmux iptables)\n", "flag provided but not defined: --nexus (a flag of nexmux discover)\n", `route "bad"`}},
		{[]string{"check", "-domain", "example.com", "--route", "bad"}, []string{"flag provided but not defined: -domain (a flag of nexmux discover)\n", `route "bad"`}},
		{[]string{"iptables", "--user", "u", "--port", "8082=a", "--chain", "PREROUTING"}, []string{"flag provided but not defined: --user (a flag of nexmux discover)\n", "PREROUTING"}},
		{[]string{"discover", "--route", "a=b", "--config", "f", "--nexus", "http://127.0.0.1:1"}, []string{"flag provided but not defined: --route (a flag of nexmux serve, iptables and check)\n", "flag provided but not defined: --config (a flag of nexmux serve, iptables and check)\n", "--user is required"}},
		// Flag parsing's own error (a command without flags, none yet).
		{[]string{"version", "--chain", "X"}, []string{"flag provided but not defined: --chain (a flag of nexmux iptables)\n"}},
		{[]string{"--nexus", "x", "discover"}, []string{"flag provided but not defined: --nexus (a flag of nexmux discover)\n"}},
		{[]string{"check", "--xyzzy", "x", "--route", "bad"}, []string{"flag provided but not defined: --xyzzy\n", `route "bad"`}},
	} {
		runRefused(t, strings.Join(tc.args, " "), tc.args, tc.want...)
	}
	// check takes iptables' flags (hidden), to check them as iptables does.
	crt, key := certFiles(t)
	if out, errs, code := run(t, "check", "--chain", "NX", "--cert", crt, "--key", key, "--route", "a.example.com=r"); code != 0 {
		t.Errorf("check --chain: exit %d:\n%s%s", code, out, errs)
	}
}

// A misspelt flag names the flag meant, as an unknown config file key
// does, in every command: one of the command's own, or another command's
// with whose it is. Each is one problem among the others (every one
// listed, exit status 2); a flag far from every name gets no guess.
func TestMisspeltFlagNamesTheFlagMeant(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--rout", "a.example.com=r", "--listen", "x"}, []string{"flag provided but not defined: --rout (did you mean --route?)\n", `listen "x"`}},
		{[]string{"check", "--rout", "a.example.com=r", "--max_conns", "5", "--Upstream", "u", "--route", "bad"},
			[]string{"--rout (did you mean --route?)\n", "--max_conns (did you mean --max-conns?)\n", "--Upstream (did you mean --upstream?)\n", `route "bad"`}},
		// check takes iptables' flags: --chain is its own.
		{[]string{"check", "-chian", "X", "--route", "bad"}, []string{"flag provided but not defined: -chian (did you mean --chain?)\n", `route "bad"`}},
		{[]string{"iptables", "--prot", "8082=a", "--chian", "X", "--families", "x"},
			[]string{"--prot (did you mean --port?)\n", "--chian (did you mean --chain?)\n", `family "x"`}},
		{[]string{"discover", "--nexsu", "http://nexus:8081", "--domian", "example.com", "--user", "u"},
			[]string{"--nexsu (did you mean --nexus?)\n", "--domian (did you mean --domain?)\n", "--password-file is required"}},
		{[]string{"serve", "--chian", "X", "--lod", "--route", "bad"},
			[]string{"--chian (did you mean --chain, a flag of nexmux iptables?)\n", "--lod (did you mean --load, a flag of nexmux iptables?)\n", `route "bad"`}},
		{[]string{"discover", "--routes", "a=b", "--user", "u"}, []string{"--routes (did you mean --route, a flag of nexmux serve, iptables and check?)\n", "--nexus is required"}},
		// Flag parsing's own error (a command without flags, none yet).
		{[]string{"version", "--rout", "x"}, []string{"flag provided but not defined: --rout (did you mean --route, a flag of nexmux serve, iptables and check?)\n"}},
		{[]string{"--nexsu", "x", "discover"}, []string{"flag provided but not defined: --nexsu (did you mean --nexus, a flag of nexmux discover?)\n"}},
	} {
		runRefused(t, strings.Join(tc.args, " "), tc.args, tc.want...)
	}
}

// A config file key that is the flag of a command reading no config file
// (nexus: of nexmux discover) says whose it is, as that flag given to
// serve does: still an unknown key, exit status 2.
func TestFileKeyOfDiscoverNamed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("route: [a.example.com=team-a]\nnexus: http://nexus:8081\nrout: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runRefused(t, "check", []string{"check", "--config", file},
		"line 2: field nexus not found: keys are the long flag names (a flag of nexmux discover, which reads no config file)\n",
		"line 3: field rout not found: keys are the long flag names (did you mean route?)\n", "no certificate")
}

// A file key that is a flag of several commands reading no config file
// names them as a flag given to the wrong command does ("nexmux a, b
// and c"), not as a list of its own.
func TestFileKeyOfSeveralOtherCommandsNamed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("nexus: http://nexus:8081\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	nexus := func() []cli.Flag { return []cli.Flag{&cli.StringFlag{Name: "nexus"}} }
	app := &cli.App{Commands: []*cli.Command{
		{Name: "serve", Flags: configFlags("serve")},
		{Name: "discover", Flags: nexus()},
		{Name: "inspect", Flags: nexus()},
	}}
	err := otherCommandsKeys(app, config.Defaults().ApplyFile(file))
	const want = "(a flag of nexmux discover and inspect, which read no config file)"
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("%v; want it to end %q", err, want)
	}
}

// An empty flag for a credential file the config file names (a script's
// "--socks5-auth-file $USERS" with USERS unset) must not turn that file
// off behind an "overridden" warning: SOCKS5 would take every client
// without a login. Refused, naming what it would have replaced; an empty
// variable is unset as ever, and a named file still overrides.
func TestEmptyFlagDoesNotDropTheFilesCredentialFile(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("alice:0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.yaml")
	conf := fmt.Sprintf("cert: [%q]\nkey: [%q]\nroute: [\"a.example.com=team-a\"]\nmirror: [\"m.example.com/docker.io=docker-proxy\"]\nsocks5-listen: 127.0.0.1:0\nsocks5-auth-file: %q\naffinity-secret-file: %q\nmirror-auth-file: %q\n", crt, key, secret, secret, secret)
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"socks5-auth-file", "affinity-secret-file", "mirror-auth-file"} {
		runRefused(t, "--"+name+` ""`, []string{"check", "--config", file, "--" + name, ""},
			name+": given empty by --"+name+" (an unset variable?) over "+file+"'s "+secret)
		// Every other problem still comes in the same run.
		runRefused(t, "--"+name+` "" with a bad limit`, []string{"check", "--config", file, "--" + name, "", "--max-conns", "x"},
			name+": given empty", `max-conns "x"`)
		t.Run(name+" env", func(t *testing.T) {
			t.Setenv(config.EnvVar(name), "")
			if _, errs, code := run(t, "check", "--config", file); code != 0 {
				t.Errorf("%s empty: exit %d, want 0 (unset: the file's):\n%s", config.EnvVar(name), code, errs)
			}
		})
	}
	if _, errs, code := run(t, "check", "--config", file, "--socks5-auth-file", secret); code != 0 || !strings.Contains(errs, "socks5-auth-file is overridden") {
		t.Errorf("--socks5-auth-file FILE: exit %d, want 0 with the overridden warning:\n%s", code, errs)
	}
}
