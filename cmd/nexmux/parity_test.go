package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
	"github.com/nexmux/nexmux/l7"
	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/upstream"
)

// loadWith runs loadConfig over args and the current environment.
func loadWith(t *testing.T, args ...string) *config.Config {
	t.Helper()
	var got *config.Config
	app := &cli.App{Flags: configFlags("iptables"), Action: func(c *cli.Context) error {
		var err error
		got, err = loadConfig(c)
		return err
	}}
	if err := app.Run(append([]string{"nexmux"}, args...)); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return got
}

// Every setting of the table is a flag, an environment variable NEXMUX_<FLAG>
// and a key of the config file, all three set the same setting to the same
// value, and the flag's default is the setting's.
func TestEveryFlagIsAnEnvVarAndAFileKey(t *testing.T) {
	flags := map[string]cli.Flag{}
	for _, f := range configFlags("iptables") {
		flags[f.Names()[0]] = f
	}
	for _, s := range config.Settings() {
		name := s.Name
		f := flags[name]
		if f == nil {
			t.Errorf("setting %s has no flag", name)
			continue
		}
		if ev := f.(cli.DocGenerationFlag).GetEnvVars(); !slices.Equal(ev, []string{s.Env()}) || s.Env() != "NEXMUX_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_")) {
			t.Errorf("--%s: env vars %q, setting says %q", name, ev, s.Env())
		}
		var flagVal, yamlVal string
		var flagDefault any
		switch f := f.(type) {
		case *typedFlag:
			flagDefault = f.def
			switch f.def.(type) {
			case bool:
				flagVal, yamlVal = strconv.FormatBool(!f.def.(bool)), strconv.FormatBool(!f.def.(bool))
			case time.Duration:
				flagVal, yamlVal = "7s", "7s"
			case int:
				flagVal, yamlVal = "7", "7"
			}
		case *listFlag:
			flagVal, yamlVal, flagDefault = "seven", "[seven]", f.def
		case *stringFlag:
			flagVal, yamlVal, flagDefault = "seven", "seven", f.Value
		default:
			t.Fatalf("--%s: flag type %T not covered", name, f)
		}
		if d := s.Default(); !reflect.DeepEqual(flagDefault, d) {
			t.Errorf("--%s: flag default %#v, setting default %#v", name, flagDefault, d)
		}
		t.Run(name, func(t *testing.T) {
			fromFlag := loadWith(t, "--"+name+"="+flagVal)
			if reflect.DeepEqual(fromFlag, config.Defaults()) {
				t.Fatalf("--%s=%s changed nothing", name, flagVal)
			}
			t.Setenv(s.Env(), flagVal)
			if fromEnv := loadWith(t); !reflect.DeepEqual(fromEnv, fromFlag) {
				t.Errorf("%s=%s gives\n%+v\n--%s gives\n%+v", s.Env(), flagVal, fromEnv, name, fromFlag)
			}
			os.Unsetenv(s.Env())
			file := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(file, []byte(name+": "+yamlVal+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			fromFile := loadWith(t, "--config", file)
			fromFile.File, fromFile.FileKeys, fromFile.FileLines, fromFile.FileValues = "", nil, nil, nil
			if !reflect.DeepEqual(fromFile, fromFlag) {
				t.Errorf("file key %q gives\n%+v\n--%s gives\n%+v", strings.TrimSpace(name+": "+yamlVal), fromFile, name, fromFlag)
			}
			// A key without a value is unset, as an empty variable is
			// (README): the default, for a list as for a scalar.
			for _, empty := range []string{name + ":\n", name + ": ~\n", name + ": null\n"} {
				if err := os.WriteFile(file, []byte(empty), 0o644); err != nil {
					t.Fatal(err)
				}
				got := loadWith(t, "--config", file)
				got.File, got.FileKeys, got.FileLines, got.FileValues = "", nil, nil, nil
				if !reflect.DeepEqual(got, config.Defaults()) {
					t.Errorf("file key %q gives\n%+v\nnot the defaults", strings.TrimSpace(empty), got)
				}
			}
		})
	}
	if len(flags) != len(config.Settings())+1 {
		t.Errorf("%d flags for %d settings and --config", len(flags), len(config.Settings()))
	}
}

// Blanks around a repeatable setting's item are trimmed whichever form
// gives it: a flag, the environment (split at commas) and a config file's
// list or single value give the same configuration, the one of the items
// written without them (a comma list pasted from a variable into flags or
// the file keeps its blanks).
func TestListItemsTrimmedInEveryForm(t *testing.T) {
	for _, s := range config.Settings() {
		if _, ok := s.Default().([]string); !ok {
			continue
		}
		name := s.Name
		t.Run(name, func(t *testing.T) {
			two := loadWith(t, "--"+name+"=s=seven", "--"+name+"=e=eight")
			one := loadWith(t, "--"+name+"=s=seven")
			type form struct {
				got, want *config.Config
			}
			forms := map[string]form{
				"flags": {loadWith(t, "--"+name+"= s=seven ", "--"+name+"=\te=eight\n"), two},
			}
			t.Setenv(s.Env(), " s=seven ,\te=eight\n")
			forms["environment"] = form{loadWith(t), two}
			os.Unsetenv(s.Env())
			file := filepath.Join(t.TempDir(), "c.yaml")
			for how, f := range map[string]struct {
				yaml  string
				items []string
			}{
				"file list":      {name + `: [" s=seven ", "\te=eight\n"]`, []string{"s=seven", "e=eight"}},
				"file block":     {name + ":\n  - ' s=seven '\n  - \"\\te=eight\\n\"", []string{"s=seven", "e=eight"}},
				"file one value": {name + `: "\ts=seven  "`, []string{"s=seven"}},
			} {
				if err := os.WriteFile(file, []byte(f.yaml+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				got := loadWith(t, "--config", file)
				// What a reload compares, to tell a changed file value.
				if v := got.FileValues[s.Name]; !reflect.DeepEqual(v, f.items) {
					t.Errorf("%s: file value %q, want %q", how, v, f.items)
				}
				got.File, got.FileKeys, got.FileLines, got.FileValues = "", nil, nil, nil
				want := two
				if len(f.items) == 1 {
					want = one
				}
				forms[how] = form{got, want}
			}
			for how, f := range forms {
				if !reflect.DeepEqual(f.got, f.want) {
					t.Errorf("%s give\n%+v\nwant, as without the blanks,\n%+v", how, f.got, f.want)
				}
			}
		})
	}
}

// An environment variable separates a repeatable setting's values with
// commas (pieces without "=" glued back for route and port); a flag value,
// like a file's list item, is one value, commas included.
func TestCommaSplitValues(t *testing.T) {
	t.Setenv("NEXMUX_ROUTE", "a.example.com=pull:g,push:h,b.example.com=r")
	t.Setenv("NEXMUX_UPSTREAM", "http://nexus-1:8081, http://nexus-2:8081,")
	t.Setenv("NEXMUX_STRIP_HEADER", "X-A,,X-B")
	c := loadWith(t, "--port", "8082=pull:g,push:h", "--port", "8083=r", "--cert", "/etc/tls/a,b/tls.crt", "--key", "/k,1", "--key", "/k2")
	for _, tc := range []struct {
		name      string
		got, want []string
	}{
		{"route", c.Route, []string{"a.example.com=pull:g,push:h", "b.example.com=r"}},
		{"port", c.Port, []string{"8082=pull:g,push:h", "8083=r"}},
		{"upstream", c.Upstream, []string{"http://nexus-1:8081", "http://nexus-2:8081"}},
		{"strip-header", c.StripHeader, []string{"X-A", "X-B"}},
		{"cert", c.Cert, []string{"/etc/tls/a,b/tls.crt"}},
		{"key", c.Key, []string{"/k,1", "/k2"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	// The command line replaces the environment's list, value by value.
	c = loadWith(t, "--route", "c.example.com=pull:g,push:h")
	if want := []string{"c.example.com=pull:g,push:h"}; !slices.Equal(c.Route, want) {
		t.Errorf("route = %q, want %q", c.Route, want)
	}
}

// An empty variable counts as unset, whatever the setting's type: it
// neither clears the file's value nor fails.
func TestEmptyEnvIsUnset(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("route: [a.example.com=r]\nbind-ports: true\nlisten: \":9443\"\nmax-conns: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"NEXMUX_ROUTE", "NEXMUX_BIND_PORTS", "NEXMUX_LISTEN", "NEXMUX_MAX_CONNS", "NEXMUX_UPSTREAM"} {
		t.Setenv(e, "")
	}
	c := loadWith(t, "--config", file)
	if !slices.Equal(c.Route, []string{"a.example.com=r"}) || !c.BindPorts || c.Listen != ":9443" || c.MaxConns != 5 || !slices.Equal(c.Upstream, config.Defaults().Upstream) {
		t.Errorf("empty variables changed the config: %+v", c)
	}
}

// Help shows the default a setting takes, not the zero value that stands
// for it: --health-interval once printed "(default 2s) (default: 0s)".
func TestHelpShowsEffectiveDefaults(t *testing.T) {
	want := map[string]string{
		"health-interval":          config.DurationText(upstream.DefaultHealthInterval),
		"upstream-max-conns":       strconv.Itoa(l7.DefaultUpstreamMaxConns),
		"plain-http-scheme":        "http",
		"handshake-timeout":        config.DurationText(mux.DefaultHandshakeTimeout),
		"header-timeout":           config.DurationText(mux.DefaultHeaderTimeout),
		"idle-timeout":             config.DurationText(mux.DefaultIdleTimeout),
		"passthrough-idle-timeout": config.DurationText(mux.DefaultPassthroughIdleTimeout),
		"drain-timeout":            config.DurationText(daemon.DefaultDrainTimeout),
		"shutdown-delay":           "none",
	}
	help := map[string]string{} // by command
	for _, s := range config.Settings() {
		cmd := s.Command
		if cmd == "" {
			cmd = "serve"
		}
		if _, ok := help[cmd]; !ok {
			help[cmd], _, _ = run(t, cmd, "--help")
		}
		line := ""
		for _, l := range strings.Split(help[cmd], "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "--"+s.Name+" ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("%s --help has no line for --%s", cmd, s.Name)
			continue
		}
		if strings.Count(line, "(default") > 1 {
			t.Errorf("--%s shows two defaults: %s", s.Name, line)
		}
		if w, ok := want[s.Name]; ok {
			delete(want, s.Name)
			if s.DefaultText != w {
				t.Errorf("--%s: DefaultText %q, the built-in default is %s", s.Name, s.DefaultText, w)
			}
			if !strings.Contains(line, "(default: "+w+")") {
				t.Errorf("--%s: help lacks (default: %s): %s", s.Name, w, line)
			}
			continue
		}
		if s.DefaultText != "" {
			t.Errorf("--%s: DefaultText %q not checked here against the built-in default", s.Name, s.DefaultText)
		}
		if isZeroDefault(s.Default()) && strings.Contains(line, "(default: 0") {
			t.Errorf("--%s: help shows a zero default, say what it stands for: %s", s.Name, line)
		}
	}
	for name := range want {
		t.Errorf("--%s: no such setting", name)
	}
}

func isZeroDefault(d any) bool {
	return d == time.Duration(0) || d == 0
}

// Every flag of every command, as the CLI defines it, is an environment
// variable NEXMUX_<FLAG>; every flag of a command that reads --config is
// also a setting (a key of the file). A flag added to a command's list
// directly, outside config.Settings, fails here rather than silently
// lacking its file key.
func TestEveryCommandFlagHasEveryForm(t *testing.T) {
	_, section, _ := strings.Cut(readRepoFile(t, "README.md"), "\n### Flags, environment and config file\n")
	section, _, _ = strings.Cut(section, "\n#")
	section = strings.Join(strings.Fields(section), " ")
	settings := map[string]bool{"config": true}
	for _, s := range config.Settings() {
		settings[s.Name] = true
	}
	for _, cmd := range newApp().Commands {
		readsConfig := false
		for _, f := range cmd.Flags {
			readsConfig = readsConfig || f.Names()[0] == "config"
		}
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			d, ok := f.(cli.DocGenerationFlag)
			if !ok {
				t.Errorf("%s --%s: %T has no environment variables", cmd.Name, name, f)
				continue
			}
			if ev := d.GetEnvVars(); !slices.Equal(ev, []string{config.EnvVar(name)}) {
				t.Errorf("%s --%s: environment variables %q, want [%s]", cmd.Name, name, ev, config.EnvVar(name))
			}
			if readsConfig && !settings[name] {
				t.Errorf("%s --%s: no config.Settings entry, so no key of the --config file", cmd.Name, name)
			}
			if !readsConfig && settings[name] {
				t.Errorf("%s --%s: a setting's name on a command that reads no --config", cmd.Name, name)
			}
		}
		// README says every flag is a key of the file: it must name the
		// commands whose flags are not (a `domain:` key is refused).
		if !readsConfig && len(cmd.Flags) > 0 && !strings.Contains(section, "`"+cmd.Name+"`, which reads no config file") {
			t.Errorf("README's %q section does not say `%s`, which reads no config file: its flags are no keys of the file", "Flags, environment and config file", cmd.Name)
		}
	}
}

// flag > environment > file, for every setting: three distinct values of
// the setting's type, each form given over the weaker ones.
func TestPrecedenceForEverySetting(t *testing.T) {
	for _, s := range config.Settings() {
		// file, env, flag: the text each form takes (a list: one item).
		var vals [3]string
		switch d := s.Default().(type) {
		case string, []string:
			vals = [3]string{"from-file", "from-env", "from-flag"}
		case int:
			vals = [3]string{"11", "12", "13"}
		case time.Duration:
			vals = [3]string{"11s", "12s", "13s"}
		case bool:
			// Two values only: the file says !d, the environment d,
			// the flag !d again.
			vals = [3]string{strconv.FormatBool(!d), strconv.FormatBool(d), strconv.FormatBool(!d)}
		default:
			t.Fatalf("%s: default of type %T not covered", s.Name, d)
		}
		t.Run(s.Name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(file, []byte(s.Name+": "+strconv.Quote(vals[0])+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			flag := "--" + s.Name + "=" + vals[2]
			load := func(args ...string) *config.Config {
				c := loadWith(t, args...)
				c.File, c.FileKeys, c.FileLines, c.FileValues = "", nil, nil, nil
				return c
			}
			fromFile := load("--config", file)
			t.Setenv(s.Env(), vals[1])
			envOverFile, flagOverAll := load("--config", file), load("--config", file, flag)
			fromEnv := load()
			os.Unsetenv(s.Env())
			fromFlag := load(flag)
			if reflect.DeepEqual(fromFile, fromEnv) {
				t.Fatalf("file %q and %s=%q give the same config: the test cannot tell them apart", vals[0], s.Env(), vals[1])
			}
			if !reflect.DeepEqual(envOverFile, fromEnv) {
				t.Errorf("%s=%s with the file's %s: %+v, want the environment's %+v", s.Env(), vals[1], vals[0], envOverFile, fromEnv)
			}
			if !reflect.DeepEqual(flagOverAll, fromFlag) {
				t.Errorf("%s over the environment and the file: %+v, want the flag's %+v", flag, flagOverAll, fromFlag)
			}
		})
	}
}

// A list variable holding only blanks and commas gives no value, so it
// counts as unset like an empty one: it cleared the file's list, silently
// (NEXMUX_STRIP_HEADER=" " let the file's Remote User Token header through
// to Nexus), where a blank string or number variable is refused.
func TestBlankListEnvIsUnset(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("port: [8082=r]\nstrip-header: [X-Remote-User]\nproxy-protocol-from: [10.0.0.0/8]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := loadWith(t, "--config", file)
	for _, v := range []string{" ", ",", " , ,\t"} {
		for _, e := range []string{"NEXMUX_PORT", "NEXMUX_STRIP_HEADER", "NEXMUX_PROXY_PROTOCOL_FROM", "NEXMUX_UPSTREAM"} {
			t.Setenv(e, v)
		}
		if got := loadWith(t, "--config", file); !reflect.DeepEqual(got, want) {
			t.Errorf("variables set to %q changed the file's lists:\n%+v\nwant\n%+v", v, got, want)
		}
	}
}

// Each help line says what the README's flags table says the flag takes
// and bounds: --config a FILE, --default-route a split target as --route
// and --port do, --body-timeout each 64 KiB of a body (l7's
// bodyProgress), not each read, which a client trickling a byte at a time
// would satisfy for ever, and --send-timeout each 64 KiB of a response
// over either protocol.
func TestHelpAgreesWithTheFlagsTable(t *testing.T) {
	for _, cmd := range []string{"serve", "check"} {
		help, _, _ := run(t, cmd, "--help")
		line := func(name string) string {
			for _, l := range strings.Split(help, "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "--"+name+" ") {
					return l
				}
			}
			t.Fatalf("%s --help has no line for --%s", cmd, name)
			return ""
		}
		for name, want := range map[string]string{
			"config":        "--config FILE ",
			"default-route": "pull:GROUP,push:HOSTED",
			"body-timeout":  "64 KiB",
		} {
			if l := line(name); !strings.Contains(l, want) {
				t.Errorf("%s --help: --%s lacks %q: %s", cmd, name, want, l)
			}
		}
		if l := line("body-timeout"); strings.Contains(l, "each read") {
			t.Errorf("%s --help: --body-timeout says it bounds each read: %s", cmd, l)
		}
		// Over HTTP/2 too each 64 KiB is timed (l7's h2SendQuantum), not a
		// whole copy's write, which a client on a thin link would outlast.
		if l := line("send-timeout"); strings.Contains(l, "512 KiB") || strings.Count(l, "64 KiB") < 2 {
			t.Errorf("%s --help: --send-timeout does not say each 64 KiB, over HTTP/1.1 and HTTP/2: %s", cmd, l)
		}
		// The placeholder is the table's (D, N, TARGET, text|json), not
		// urfave/cli's "value", and every flag help lists has its row.
		table := readmeFlagsTable(t)
		defaults := readmeFlagsDefaults(t)
		_, options, _ := strings.Cut(help, "\nOPTIONS:\n")
		options, _, _ = strings.Cut(options, "\n\n")
		for _, l := range strings.Split(options, "\n") {
			l = strings.TrimSpace(l)
			if !strings.HasPrefix(l, "--") || strings.HasPrefix(l, "--help") {
				continue
			}
			shown := helpColumns.Split(l, 2)[0]
			name, _, _ := strings.Cut(shown, " ")
			row, ok := table[name]
			if !ok {
				t.Errorf("%s --help shows %s, which the README's flags table lacks", cmd, name)
				continue
			}
			if shown != row {
				t.Errorf("%s --help shows %q, the README's flags table %q", cmd, shown, row)
			}
			checkHelpDefault(t, cmd, name, l, defaults[name])
		}
	}
}

// hardeningLimits are the limits of issue 17, whose README security section
// ("Hardening: limits and their defaults") must give each with its default.
var hardeningLimits = []string{
	"upstream-max-conns", "max-conns", "max-conns-per-client", "max-requests-per-client",
	"per-client-ipv6-prefix", "max-conn-age", "body-timeout", "send-timeout",
	"passthrough-idle-timeout", "port-tls-only", "strip-header",
}

// The security section names every limit with "(default X", X being the
// flags table's default ("off" for false, "none" for no value); the rule
// of a default the fd limit gives is not compared. --upstream-max-conns
// was in the flags table only.
func TestHardeningSectionGivesEveryLimitsDefault(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	_, section, ok := strings.Cut(readme, "\n### Hardening: limits and their defaults\n")
	if !ok {
		t.Fatal("README.md has no Hardening section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	section = strings.Join(strings.Fields(section), " ") // lines joined
	cells := readmeFlagsDefaults(t)
	for _, name := range hardeningLimits {
		// "`--max-conn-age` (default 10m;", "`--strip-header NAME`
		// (default: none)", "`--body-timeout` and `--send-timeout`
		// (default 1m each;"
		re := regexp.MustCompile("(?:`--[a-z0-9-]+` and )?`--" + regexp.QuoteMeta(name) + "(?: [A-Z]+)?`(?: and `--[a-z0-9-]+`)? \\(default:? ([^;:),]+)")
		m := re.FindStringSubmatch(section)
		if m == nil {
			t.Errorf("README's Hardening section does not give --%s with its default", name)
			continue
		}
		if machineDefaults["--"+name] {
			continue
		}
		got := strings.TrimSuffix(strings.TrimSpace(m[1]), " each")
		want := strings.ReplaceAll(cells["--"+name], "`", "")
		switch want {
		case "":
			want = "none"
		case "false":
			want = "off"
		}
		if got != want {
			t.Errorf("README's Hardening section: --%s (default %s), the flags table %q", name, got, want)
		}
	}
}

// helpDefault is the default a help line shows, the last "(default: X)"
// before its variable, or "".
var helpDefault = regexp.MustCompile(`\(default: (.*)\) \[\$NEXMUX_[A-Z0-9_]+\]$`)

// machineDefaults are the settings whose default depends on the machine
// (the fd limit): README gives the rule, help the number it came to here.
var machineDefaults = map[string]bool{"--max-conns": true, "--max-conns-per-client": true}

// checkHelpDefault compares the default a help line shows with the
// README's default column (cell, code marks dropped), and checks that a
// default written as a value is one the flag reads as that default: help
// and README show the human form (2m), and the flag reads it as it reads
// time.Duration's own (2m0s).
func checkHelpDefault(t *testing.T, cmd, name, line, cell string) {
	t.Helper()
	shown := ""
	if m := helpDefault.FindStringSubmatch(line); m != nil {
		shown = m[1]
	}
	cell = strings.ReplaceAll(cell, "`", "")
	if machineDefaults[name] {
		if _, err := strconv.Atoi(shown); err != nil || cell == "" {
			t.Errorf("%s --help: %s shows default %q, want the number the README's rule (%q) gives", cmd, name, shown, cell)
		}
		return
	}
	if shown != cell {
		t.Errorf("%s --help: %s shows default %q, the README's flags table %q", cmd, name, shown, cell)
	}
	for _, s := range config.Settings() {
		if "--"+s.Name != name || shown == "" || shown == "none" {
			continue
		}
		def := s.Default()
		switch def.(type) {
		case bool, int, time.Duration:
		default:
			continue
		}
		want := def
		if s.DefaultText != "" {
			// The zero value stands for a built-in default: the one shown.
			if w, err := config.ParseText(def, s.DefaultText); err == nil {
				want = w
			}
		}
		forms := []string{shown, fmt.Sprint(want)} // 2m and 2m0s alike
		for _, text := range forms {
			if got, err := config.ParseText(def, text); err != nil || got != want {
				t.Errorf("%s --help: %s default %q: the flag reads %q as %v (%v), want %v", cmd, name, shown, text, got, err, want)
			}
		}
	}
}

// No command's help shows urfave/cli's placeholder "value", which says
// nothing of what the flag takes; the README's table covers serve and
// check, whose flags iptables shows too. Nor a default in quotes, which
// urfave/cli gives a string flag's: README writes `--format flags`, and
// discover showed (default: "flags").
func TestHelpShowsNoBareValuePlaceholder(t *testing.T) {
	for _, cmd := range []string{"serve", "check", "iptables", "discover"} {
		help, _, _ := run(t, cmd, "--help")
		_, options, _ := strings.Cut(help, "\nOPTIONS:\n")
		options, _, _ = strings.Cut(options, "\n\n")
		for _, l := range strings.Split(options, "\n") {
			if shown := helpColumns.Split(strings.TrimSpace(l), 2)[0]; strings.HasSuffix(shown, " value") {
				t.Errorf("%s --help: %s", cmd, shown)
			}
			if strings.Contains(l, `(default: "`) {
				t.Errorf("%s --help shows a default in quotes: %s", cmd, strings.TrimSpace(l))
			}
		}
	}
}

// helpColumns is the space between a help line's flag and its usage.
var helpColumns = regexp.MustCompile(`\s{2,}`)

// readmeFlagsTable is the README's flags table: each flag's name, as
// --name, to the flag and placeholder its row shows (`--listen ADDR`).
func readmeFlagsTable(t *testing.T) map[string]string {
	t.Helper()
	readme := readRepoFile(t, "README.md")
	_, rest, ok := strings.Cut(readme, "\n| flag | default | meaning |\n|---|---|---|\n")
	if !ok {
		t.Fatal("README.md has no flags table")
	}
	rows := map[string]string{}
	for _, l := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(l, "|") {
			break
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(l, "| "), " |")
		for _, m := range regexp.MustCompile("`(--[^`]+)`").FindAllStringSubmatch(first, -1) {
			shown := strings.ReplaceAll(m[1], `\|`, "|")
			name, _, _ := strings.Cut(shown, " ")
			rows[name] = shown
		}
	}
	if len(rows) < 30 {
		t.Fatalf("read %d rows of the README's flags table: %q", len(rows), rows)
	}
	return rows
}

// readmeFlagsDefaults is the README's flags table's default column, by
// --name, as written (code marks included; "" for none).
func readmeFlagsDefaults(t *testing.T) map[string]string {
	t.Helper()
	readme := readRepoFile(t, "README.md")
	_, rest, ok := strings.Cut(readme, "\n| flag | default | meaning |\n|---|---|---|\n")
	if !ok {
		t.Fatal("README.md has no flags table")
	}
	defaults := map[string]string{}
	for _, l := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := regexp.MustCompile(`[^\\]\|`).Split(strings.TrimPrefix(l, "|"), 3)
		if len(cells) < 3 {
			t.Fatalf("README flags table row with fewer than 3 cells: %s", l)
		}
		for _, m := range regexp.MustCompile("`(--[^` ]+)").FindAllStringSubmatch(cells[0], -1) {
			defaults[m[1]] = strings.TrimSpace(cells[1] + " ")
		}
	}
	return defaults
}

// An enum-like setting's value is read whatever its case, as --log-level's
// always was: JSON, HTTPS, V2, NONE, IP6TABLES, YAML, on the command line,
// in the environment and in the file alike. It is stored in its canonical
// spelling, which is what the daemon and l7 compare; a value that is none of
// them is refused naming the canonical spellings.
func TestEnumValuesIgnoreCase(t *testing.T) {
	given := map[string]string{"log-format": "JSON", "log-level": "DEBUG", "plain-http-scheme": "HTTPS", "passthrough-proxy-protocol": "V2"}
	canonical := func(c *config.Config) map[string]string {
		return map[string]string{"log-format": c.LogFormat, "log-level": c.LogLevel, "plain-http-scheme": c.PlainHTTPScheme, "passthrough-proxy-protocol": c.PassthroughProxyProtocol}
	}
	want := map[string]string{"log-format": "json", "log-level": "debug", "plain-http-scheme": "https", "passthrough-proxy-protocol": "v2"}
	var args []string
	var yaml string
	for name, v := range given {
		args = append(args, "--"+name, v)
		yaml += name + ": " + v + "\n"
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := canonical(loadWith(t, args...)); !reflect.DeepEqual(got, want) {
		t.Errorf("flags %q: %v, want %v", args, got, want)
	}
	if got := canonical(loadWith(t, "--config", file)); !reflect.DeepEqual(got, want) {
		t.Errorf("file %q: %v, want %v", yaml, got, want)
	}

	crt, key := certFiles(t)
	base := []string{"--cert", crt, "--key", key, "--route", "a.example.com=r", "--passthrough", "p.example.com=127.0.0.1:9"}
	if out, errs, code := run(t, append(append([]string{"check"}, base...), args...)...); code != 0 {
		t.Errorf("check with %q: exit %d\n%s%s", args, code, out, errs)
	}
	if out, errs, code := run(t, append([]string{"check", "--config", file}, base...)...); code != 0 {
		t.Errorf("check with file %q: exit %d\n%s%s", yaml, code, out, errs)
	}
	// NONE is none, as none is: no passthrough route asked for.
	if out, errs, code := run(t, "check", "--cert", crt, "--key", key, "--route", "a.example.com=r", "--passthrough-proxy-protocol", "NONE"); code != 0 {
		t.Errorf("check --passthrough-proxy-protocol NONE: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := run(t, "iptables", "--port", "8082=r", "--families", "IP6TABLES,iptables"); code != 0 {
		t.Errorf("iptables --families IP6TABLES,iptables: exit %d\n%s%s", code, out, errs)
	}
	if _, errs, code := run(t, "discover", "--format", "YAML"); code != exitInvalid || strings.Contains(errs, "format") {
		t.Errorf("discover --format YAML: exit %d, want %d without a format problem:\n%s", code, exitInvalid, errs)
	}
	for name, v := range given {
		t.Setenv(config.EnvVar(name), v)
	}
	if got := canonical(loadWith(t)); !reflect.DeepEqual(got, want) {
		t.Errorf("environment: %v, want %v", got, want)
	}
	if out, errs, code := run(t, append([]string{"check"}, base...)...); code != 0 {
		t.Errorf("check with the environment's: exit %d\n%s%s", code, out, errs)
	}
	for name := range given {
		os.Unsetenv(config.EnvVar(name))
	}

	// What is none of them is refused, the accepted values spelt as help
	// and README spell them.
	_, errs, code := run(t, append([]string{"check", "--log-format", "XML", "--log-level", "LOUD", "--plain-http-scheme", "FTP",
		"--passthrough-proxy-protocol", "V3", "--families", "NFT"}, base...)...)
	if code != exitInvalid {
		t.Fatalf("bad values: exit %d, want %d\n%s", code, exitInvalid, errs)
	}
	for _, w := range []string{`log-format "XML": want text or json`, `log-level "LOUD": want debug, info, warn or error`,
		`plain-http-scheme "FTP": want http or https`, `passthrough-proxy-protocol "V3": want v1 or v2`, `family "NFT": want iptables and/or ip6tables`} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errs)
		}
	}
}
