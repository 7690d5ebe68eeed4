package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nexmux/nexmux/internal/config"
)

// An empty flag over a value the config file gives is refused for every
// single-value setting, not only the credential files: a script's
// --metrics-listen "$METRICS" with METRICS unset took the file's metrics
// listener away (and --socks5-listen "" the SOCKS5 ingress, --default-route
// "" the route of clients without SNI) with no more than the "overridden"
// warning and exit 0, where an empty number, duration or bool is refused.
// Every string setting is in the table, so a new one cannot be missed.
func TestEmptyFlagDoesNotDropTheFilesValue(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	values := stringSettingValues(t, dir)
	delete(values, "chain") // check reads no chain from a file; the iptables tests below do
	for name, v := range values {
		conf := fmt.Sprintf("cert: [%q]\nkey: [%q]\nroute: [\"a.example.com=team-a\"]\npassthrough: [\"p.example.com=127.0.0.1:9\"]\nmirror: [\"m.example.com/docker.io=docker-proxy\"]\n", crt, key)
		if name != "socks5-listen" {
			conf += "socks5-listen: 127.0.0.1:0\n"
		}
		conf += fmt.Sprintf("%s: %q\n", name, v)
		file := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errs, code := run(t, "check", "--config", file); code != 0 {
			t.Fatalf("%s: the file alone: exit %d:\n%s", name, code, errs)
		}
		errs := runRefused(t, "--"+name+` ""`, []string{"check", "--config", file, "--" + name, ""},
			name+": given empty by --"+name+" (an unset variable?) over "+file+"'s "+v+": leave it out to use the file's")
		if strings.Contains(errs, "overridden") {
			t.Errorf("--%s \"\": refused, yet warned of as overridden:\n%s", name, errs)
		}
		// An empty variable is unset, as ever: the file's value.
		t.Run(name+" env", func(t *testing.T) {
			t.Setenv(config.EnvVar(name), "")
			if _, errs, code := run(t, "check", "--config", file); code != 0 {
				t.Errorf("%s empty: exit %d, want 0 (unset: the file's):\n%s", config.EnvVar(name), code, errs)
			}
		})
	}
}

// An empty flag over its environment variable's value is refused as over
// the file's, for every single-value setting: NEXMUX_METRICS_LISTEN set in
// the unit and --metrics-listen "$METRICS" with METRICS unset took the
// metrics listener away with exit 0 and not a word (no "overridden"
// warning either), --socks5-auth-file "" the SOCKS5 logins; NEXMUX_CHAIN's
// chain was refused only as "no chain named", leaving the variable unnamed.
// The problem names the flag and the variable, with a file beside them or
// not, in check and iptables alike.
func TestEmptyFlagDoesNotDropTheVariablesValue(t *testing.T) {
	crt, key := certFiles(t)
	dir := t.TempDir()
	values := stringSettingValues(t, dir)
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("log-level: warn\nchain: NX-F\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"check", "--cert", crt, "--key", key, "--route", "a.example.com=team-a",
		"--passthrough", "p.example.com=127.0.0.1:9", "--mirror", "m.example.com/docker.io=docker-proxy", "--port", "8082=team-a"}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			env := config.EnvVar(name)
			t.Setenv(env, v)
			args := slices.Clone(base)
			if name != "socks5-listen" {
				args = append(args, "--socks5-listen", "127.0.0.1:0")
			}
			if _, errs, code := run(t, args...); code != 0 {
				t.Fatalf("%s=%s alone: exit %d:\n%s", env, v, code, errs)
			}
			want := name + ": given empty by --" + name + " (an unset variable?) over " + env + "'s " + v + ": leave it out to use the variable's"
			runRefused(t, "--"+name+` ""`, append(slices.Clone(args), "--"+name, ""), want, "unset "+env+" for the default")
			// The file's key, if any, is under the variable: still the
			// variable's value that the flag would drop.
			unset := "unset " + env + " for the default"
			if name == "log-level" || name == "chain" { // the file's keys
				unset = "unset " + env + " for " + file + "'s value"
			}
			runRefused(t, "--config, --"+name+` ""`, append(slices.Clone(args), "--config", file, "--"+name, ""), want, unset)
			// A file that cannot be read may have given it.
			runRefused(t, "--config gone, --"+name+` ""`, append(slices.Clone(args), "--config", file+".gone", "--"+name, ""), want,
				"unset "+env+" for "+file+".gone's value or the default")
			if config.CommandOf(name) == "iptables" {
				runRefused(t, "iptables --"+name+` ""`, []string{"iptables", "--port", "8082=team-a", "--" + name, ""}, want)
				for _, conf := range []string{file, filepath.Join(dir, "gone.yaml")} {
					out, errs, code := run(t, "iptables", "--delete", "--config", conf, "--"+name, "")
					// Refused, it removes no chain, and says none.
					if code != exitInvalid || out != "" || !strings.Contains(errs, want) || strings.Contains(errs, "removing chain") {
						t.Errorf("iptables --delete --config %s --%s \"\": exit %d, want %d, nothing printed or removed and %q:\n%s%s", conf, name, code, exitInvalid, want, out, errs)
					}
				}
			}
		})
	}
}

// discover's flags too: NEXMUX_DOMAIN=corp.test under --domain "$DOMAIN"
// with DOMAIN unset asked Nexus and printed a mapping without the
// operator's names, not a word said; --nexus "" and --format "" were
// refused as "required" and `format ""`, the variable unnamed. Each is
// refused naming the flag and the variable, and Nexus is not asked.
func TestDiscoverEmptyFlagDoesNotDropTheVariablesValue(t *testing.T) {
	url, pw, asked := askedNexus(t)
	values := map[string]string{"nexus": url, "user": "admin", "password-file": pw, "domain": "corp.test", "format": "yaml"}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			for n, v := range values {
				t.Setenv(config.EnvVar(n), v)
			}
			if out, errs, code := run(t, "discover"); code != 0 || !strings.Contains(out, "corp.test") {
				t.Fatalf("the variables alone: exit %d:\n%s%s", code, out, errs)
			}
			asked()
			errs := runRefused(t, "--"+name+` ""`, []string{"discover", "--" + name, ""},
				name+": given empty by --"+name+" (an unset variable?) over "+config.EnvVar(name)+"'s "+v+": leave it out to use the variable's")
			if strings.Contains(errs, "required") || strings.Contains(errs, "want flags or yaml") {
				t.Errorf("--%s \"\": one problem, said twice:\n%s", name, errs)
			}
			if n := asked(); n != 0 {
				t.Errorf("--%s \"\": Nexus asked %d times", name, n)
			}
		})
	}
}

// --config "" over NEXMUX_CONFIG names the variable and its file: the
// problem said "leave it out to read none", where leaving it out reads
// the variable's file, as check then does.
func TestEmptyConfigFlagOverItsVariable(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("route: [\"f.example.com=team-f\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEXMUX_CONFIG", file)
	if out, errs, code := run(t, "check", "--cert", crt, "--key", key); code != 0 || !strings.Contains(out, "f.example.com") {
		t.Fatalf("NEXMUX_CONFIG alone: exit %d:\n%s%s", code, out, errs)
	}
	want := `config "": --config names no file (an unset variable?) over NEXMUX_CONFIG's ` + file + ": leave it out to read that file"
	errs := runRefused(t, `--config ""`, []string{"check", "--cert", crt, "--key", key, "--config", ""}, want)
	if strings.Contains(errs, "read none") {
		t.Errorf(`--config "" over NEXMUX_CONFIG: says leaving it out reads none:\n%s`, errs)
	}
	runRefused(t, `iptables --config ""`, []string{"iptables", "--port", "8082=team-a", "--config", ""}, want)
}

// An empty number, duration or bool flag over its variable was refused as
// unparsable (`max-conns "": want a whole number`), the variable that held
// the value unnamed: it is the one problem an empty string flag over its
// variable is, naming both, for every such setting.
func TestEmptyTypedFlagOverItsVariable(t *testing.T) {
	crt, key := certFiles(t)
	texts := map[string]string{"bool": "false", "time.Duration": "5s", "int": "64"}
	n := 0
	for _, s := range config.Settings() {
		text, typed := texts[fmt.Sprintf("%T", s.Default())]
		if !typed {
			continue
		}
		n++
		t.Run(s.Name, func(t *testing.T) {
			env := config.EnvVar(s.Name)
			t.Setenv(env, text)
			errs := runRefused(t, "--"+s.Name+`=""`, []string{"check", "--cert", crt, "--key", key, "--route", "a.example.com=team-a", "--" + s.Name + "="},
				s.Name+": given empty by --"+s.Name+" (an unset variable?) over "+env+"'s "+text+": leave it out to use the variable's")
			if strings.Contains(errs, s.Name+` "":`) {
				t.Errorf("--%s=\"\": one problem, said twice:\n%s", s.Name, errs)
			}
		})
	}
	if n < 20 {
		t.Errorf("%d typed settings, want 20 or more", n)
	}
}

// stringSettingValues is a valid value for every string setting (a secret
// file written in dir where one is a file); a string setting missing from
// it fails t, so a new one cannot go untested.
func stringSettingValues(t *testing.T, dir string) map[string]string {
	t.Helper()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("alice:0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	values := map[string]string{
		"listen":                     "127.0.0.1:0",
		"affinity-secret-file":       secret,
		"default-route":              "team-a",
		"mirror-auth-file":           secret,
		"passthrough-proxy-protocol": "v2",
		"socks5-listen":              "127.0.0.1:0",
		"socks5-auth-file":           secret,
		"plain-http-scheme":          "https",
		"metrics-listen":             "127.0.0.1:0",
		"log-format":                 "json",
		"log-level":                  "debug",
		"chain":                      "NX-B",
	}
	for _, s := range config.Settings() {
		if _, ok := s.Default().(string); ok && values[s.Name] == "" {
			t.Errorf("string setting %s: no value in this test's table", s.Name)
		}
	}
	return values
}
