package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/internal/config"
)

// A value the config file gives is checked whether or not a flag or
// variable overrides it, as its type always was ("max-conns: x" under
// --max-conns is refused): a "max-conns: -1" or "log-format: xml" under a
// flag passed with only the "overridden" warning, yet a reload reads the
// file, and a run without the flag (or check of the file alone) refuses it.
// The problem names the file's line and the flag over it; good values
// beside it still come with the warning only.
func TestOverriddenFileValueIsStillChecked(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	head := fmt.Sprintf("cert: [%q]\nkey: [%q]\nroute: [\"a.example.com=team-a\"]\n", crt, key)
	for _, tc := range []struct {
		line, flag, value, want string
	}{
		{"max-conns: -1", "max-conns", "10", "max-conns -1: must not be negative"},
		{"idle-timeout: -5s", "idle-timeout", "1m", "idle-timeout -5s: must not be negative"},
		{"per-client-ipv6-prefix: 200", "per-client-ipv6-prefix", "64", "per-client-ipv6-prefix 200: must be 1 to 128"},
		{"log-format: xml", "log-format", "json", `log-format "xml": want text or json`},
		{"metrics-listen: nonsense", "metrics-listen", "127.0.0.1:0", `metrics-listen "nonsense"`},
		{"default-route: \"a b\"", "default-route", "team-a", `default-route "a b"`},
		{"strip-header: [\"a b\"]", "strip-header", "X-Token", `strip-header "a b": not a header name`},
		{"chain: standard", "chain", "NX-A", `chain "standard"`},
	} {
		file := filepath.Join(dir, tc.flag+".yaml")
		if err := os.WriteFile(file, []byte(head+"idle-release-after: 2s\n"+tc.line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		where := fmt.Sprintf("(from config %s line 5, a value --%s or %s overrides", file, tc.flag, config.EnvVar(tc.flag))
		errs := runRefused(t, tc.line+" under the flag", []string{"check", "--config", file, "--" + tc.flag, tc.value, "--idle-release-after", "3s"}, tc.want, where)
		if strings.Contains(errs, "overridden") {
			t.Errorf("%s: refused, yet warned of as overridden:\n%s", tc.line, errs)
		}
		t.Run(tc.flag+" env", func(t *testing.T) {
			t.Setenv(config.EnvVar(tc.flag), tc.value)
			runRefused(t, tc.line+" under the variable", []string{"check", "--config", file}, tc.want, where)
		})
		// Fixed in the file, the flag over it is warned of, as ever.
		good := tc.line[:strings.Index(tc.line, ":")] + ": " + fmt.Sprintf("%q", tc.value)
		if err := os.WriteFile(file, []byte(head+good+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errs, code := run(t, "check", "--config", file, "--"+tc.flag, tc.value); code != 0 {
			t.Errorf("%s: exit %d, want 0:\n%s", good, code, errs)
		}
	}
	// Every such value in one run, under flags and variables alike.
	both := filepath.Join(dir, "both.yaml")
	if err := os.WriteFile(both, []byte(head+"max-conns: -1\nlog-format: xml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("two", func(t *testing.T) {
		t.Setenv("NEXMUX_LOG_FORMAT", "json")
		runRefused(t, "two overridden values", []string{"check", "--config", both, "--max-conns", "10"},
			"max-conns -1: must not be negative (from config "+both+" line 4, a value --max-conns",
			`log-format "xml": want text or json (from config `+both+" line 5, a value --log-format")
	})

	// Only the value's own problems: how it goes with the command line's
	// other values (a host a --route there already has, the listen address
	// it would share) is not the file's.
	file := filepath.Join(dir, "clash.yaml")
	if err := os.WriteFile(file, []byte(head+"passthrough: [\"a.example.com=127.0.0.1:9\"]\nmetrics-listen: 127.0.0.1:49083\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "check", "--config", file, "--route", "a.example.com=team-b", "--passthrough", "p.example.com=127.0.0.1:9", "--metrics-listen", "127.0.0.1:0", "--listen", "127.0.0.1:49083"); code != 0 || !strings.Contains(errs, "passthrough is overridden") || !strings.Contains(errs, "metrics-listen is overridden") {
		t.Errorf("file values that clash only with flags: exit %d, want 0 with the overridden warnings:\n%s", code, errs)
	}
	// nexmux iptables checks the file's chain under --chain too, but
	// --delete needs only the chain in effect: a warning there.
	file = filepath.Join(dir, "chain.yaml")
	if err := os.WriteFile(file, []byte("port: [\"8082=team-a\"]\nchain: standard\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runRefused(t, "iptables", []string{"iptables", "--config", file, "--chain", "NX-A"}, `chain "standard"`, "a value --chain or NEXMUX_CHAIN overrides")
	out, errs, code := run(t, "iptables", "--config", file, "--chain", "NX-A", "--delete")
	if code != 0 || !strings.Contains(out, "NX-A") || !strings.Contains(errs, "warning: chain \"standard\"") || !strings.Contains(errs, "ignored by --delete") {
		t.Errorf("iptables --delete: exit %d, want 0 with a warning:\n%s%s", code, out, errs)
	}
}

// A credential file's path the config file gives is what a flag over it
// replaces where that path does not exist (the file written for another
// host, its secrets mounted elsewhere here): whether a file is at the
// file's path on this host is no problem of the file's value, so the
// override passes with the "overridden" warning, as before the file's
// overridden values were checked. The file named in effect is read.
func TestOverriddenCredentialFilePathNotRead(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("alice:correct-horse-battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 48)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mirror := filepath.Join(dir, "mirror")
	if err := os.WriteFile(mirror, []byte("puller:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "elsewhere")
	file := filepath.Join(dir, "creds.yaml")
	body := fmt.Sprintf("cert: [%q]\nkey: [%q]\nmirror: [\"a.example.com/docker.io=hub\"]\nsocks5-listen: 127.0.0.1:0\n", crt, key) +
		fmt.Sprintf("socks5-auth-file: %q\naffinity-secret-file: %q\nmirror-auth-file: %q\n", missing+"/users", missing+"/secret", missing+"/mirror")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "check", "--config", file, "--socks5-auth-file", users, "--affinity-secret-file", secret, "--mirror-auth-file", mirror)
	for _, name := range credentialFiles {
		if code != 0 || !strings.Contains(errs, name+" is overridden") || strings.Contains(errs, missing) {
			t.Errorf("%s at a path missing here, under a flag naming a file that is: exit %d, want 0 with the overridden warning:\n%s", name, code, errs)
		}
	}
	// The file in effect is still read.
	runRefused(t, "a missing file in effect", []string{"check", "--config", file, "--socks5-auth-file", users, "--affinity-secret-file", missing + "/secret", "--mirror-auth-file", mirror}, missing+"/secret")
}
