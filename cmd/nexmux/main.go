// Command nexmux fronts Nexus Repository's Docker repositories with one
// listener. This file only turns flags, environment variables and the config
// file into a config.Config; the packages do the work.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
	"github.com/nexmux/nexmux/internal/discover"
	"github.com/nexmux/nexmux/internal/errlist"
	"github.com/nexmux/nexmux/internal/iptables"
	"github.com/nexmux/nexmux/internal/memtrim"
	"github.com/nexmux/nexmux/route"
)

// exitInvalid is the status for invalid flags or configuration.
const exitInvalid = 2

func env(name string) []string { return []string{config.EnvVar(name)} }

// configFlags are the flags of a command that reads a configuration:
// --config and one flag per config.Settings entry of every command or of
// this one (Setting.Command). The file takes every setting's key: the
// commands share it. check reports what any command would refuse, so it
// takes the other commands' settings too, as hidden flags: read, with
// their variables, as every flag is.
func configFlags(command string) []cli.Flag {
	flags := []cli.Flag{
		newConfigFlag("YAML `FILE` whose keys are these long flag names (precedence: flag > env > file)"),
	}
	for _, s := range config.Settings() {
		other := s.Command != "" && s.Command != command
		if other && command != "check" {
			continue
		}
		envs := env(s.Name)
		var f cli.Flag
		switch d := s.Default().(type) {
		case string:
			// As README writes it: urfave/cli would quote it (":8443").
			f = &stringFlag{cli.StringFlag{Name: s.Name, Value: d, DefaultText: cmp.Or(s.DefaultText, d), Usage: s.Usage, EnvVars: envs, Hidden: other}}
		case []string:
			lf := newListFlag(s.Name, s.Usage, s.DefaultText, envs, d)
			lf.Hidden = other
			f = lf
		case bool, time.Duration, int:
			tf := newTypedFlag(s.Name, s.Usage, s.DefaultText, envs, d)
			tf.Hidden = other
			f = tf
		default:
			panic(fmt.Sprintf("setting %s: no flag for a %T", s.Name, d))
		}
		flags = append(flags, f)
	}
	return flags
}

// loadConfig builds the configuration: defaults, then the file, then every
// flag set on the command line or in the environment. An error lists every
// problem of the file and every unparsable value; the Config is nil when
// the file could not be read as a mapping, else it holds everything that
// parsed, for Build to report the rest. A Config with an error must not be
// served.
func loadConfig(c *cli.Context) (*config.Config, error) {
	file := c.String("config")
	if file == "" && c.IsSet("config") {
		// --config "" (a script's unset variable): a file was meant, so it
		// is one that cannot be read, and what it may have given is not
		// asked for; the other values are still read and checked.
		_, err := loadSettings(c, "")
		return nil, errlist.Join(config.NoFileNamed(fromEnv(env("config"))), err)
	}
	return loadSettings(c, file)
}

// loadSettings is loadConfig with file as the config file ("": none).
func loadSettings(c *cli.Context, file string) (*config.Config, error) {
	cfg := config.Defaults()
	// Clipped: appending the file's warnings must not write into the
	// app's own list, which every later load (a reload) starts from.
	cfg.EnvWarnings = slices.Clip(envWarnings(c))
	var errs *multierror.Error
	for _, err := range argProblems(c) {
		errs = errlist.Append(errs, err)
	}
	if f, ok := c.Generic("config").(*configValue); ok {
		errs = errlist.Append(errs, f.problem())
	}
	if file != "" {
		err := otherCommandsKeys(c.App, cfg.ApplyFile(file))
		if c.Command != nil && c.Command.Name == "serve" {
			var ignored []string
			ignored, err = othersKeysIgnored(err, "serve")
			cfg.EnvWarnings = append(cfg.EnvWarnings, ignored...)
		}
		errs = errlist.Append(errs, err)
		switch {
		case config.Unreadable(err):
			// Nothing of the file applied: validating the rest would
			// only report what the file was meant to give.
			cfg = nil
		case err == nil:
			cfg.File = file
		}
		// With some keys invalid, the valid ones are applied so that
		// Build reports their problems in the same run; errs keeps the
		// config from being used.
	}
	for _, s := range config.Settings() {
		if !c.IsSet(s.Name) {
			continue
		}
		if err := tooLong(c, &s); err != nil {
			errs = errlist.Append(errs, err)
			continue
		}
		var v any
		switch d := s.Default().(type) {
		case string:
			v = c.String(s.Name)
			if err := emptyOver(cfg, file, s.Name, v.(string)); err != nil {
				errs = errlist.Append(errs, err)
				continue
			}
		case []string:
			v = c.Generic(s.Name).(*listValue).values(&s)
		case bool, time.Duration, int:
			raw := c.Generic(s.Name).(*rawValue)
			// Unparsable anyway; over a variable, it says which.
			if err := emptyOver(cfg, file, s.Name, raw.text); err != nil {
				errs = errlist.Append(errs, err)
				continue
			}
			var err error
			if v, err = raw.parse(s.Name, d); err != nil {
				errs = errlist.Append(errs, err)
				continue
			}
		}
		if cfg != nil {
			s.Set(cfg, v)
		}
	}
	return cfg, errlist.Err(errs)
}

// credentialFiles are the settings whose file the config file may name:
// an empty flag over one would turn a protection off (SOCKS5 logins), make
// replicas disagree (the affinity secret) or send mirror requests without
// their login, so their problem says to name another file.
var credentialFiles = []string{"socks5-auth-file", "affinity-secret-file", "mirror-auth-file"}

// emptyOver is the problem of a flag that gives a single-value setting
// empty over the value of its environment variable or of the config
// file: a script's unset variable ("--metrics-listen $METRICS") would take
// that value away (metrics, SOCKS5 logins, the default route) with no more
// than the "overridden" warning, or none at all over a variable, where an
// empty number, duration or bool is refused as unparsable (over a
// variable, by this problem, which names it). Refused for every such
// setting. Over the file, chain keeps EmptyChainProblem (file or
// not) and its own words; over a variable, the variable is named, for
// chain too. Leaving the flag out keeps the value it was given over. An
// empty variable never gets here: it is unset.
func emptyOver(cfg *config.Config, file, name, v string) error {
	if v != "" {
		return nil
	}
	instead := "give another value"
	if slices.Contains(credentialFiles, name) || name == "password-file" { // discover's
		instead = "name another file"
	}
	// The flag replaced the variable's value: read it again.
	if env, was := fromEnv(env(name)); env != "" {
		unset := ""
		if slices.ContainsFunc(config.Settings(), func(s config.Setting) bool { return s.Name == name }) {
			// Not one of discover's flags, some of which are required.
			unset = fmt.Sprintf(" (unset %s for %s)", env, withoutVariable(cfg, file, name))
		}
		return &config.SettingError{Setting: name, Err: fmt.Errorf("%s: given empty by --%s (an unset variable?) over %s's %s: leave it out to use the variable's, or %s%s", name, name, env, was, instead, unset)}
	}
	if cfg == nil || name == "chain" {
		return nil
	}
	was, _ := cfg.FileValues[name].(string)
	if was == "" {
		return nil
	}
	return &config.SettingError{Setting: name, Err: fmt.Errorf("%s: given empty by --%s (an unset variable?) over %s's %s: leave it out to use the file's, or %s", name, name, file, was, instead)}
}

// withoutVariable says what the setting name is with its variable unset
// and no flag: the file's value, or the default (either, for a file that
// could not be read: cfg nil).
func withoutVariable(cfg *config.Config, file, name string) string {
	switch {
	case cfg == nil && file != "":
		return file + "'s value or the default"
	case cfg != nil:
		if _, ok := cfg.FileValues[name]; ok {
			return file + "'s value"
		}
	}
	return "the default"
}

// tooLong is the problem of a value of the setting, given by a flag or
// its variable, longer than any setting takes (config.LongValue): left
// out, as an unparsable one is, and named without being echoed whole.
func tooLong(c *cli.Context, s *config.Setting) error {
	var texts []string
	switch s.Default().(type) {
	case string:
		texts = []string{c.String(s.Name)}
	case []string:
		texts = c.Generic(s.Name).(*listValue).values(s)
	case bool, time.Duration, int:
		texts = []string{c.Generic(s.Name).(*rawValue).text}
	}
	for _, text := range texts {
		if err := config.LongValue(text); err != nil {
			from := ""
			if env := envOrigin(c, s.Name); env != "" {
				from = " (from " + env + ")"
			}
			return &config.SettingError{Setting: s.Name, Err: fmt.Errorf("%s: %v%s", s.Name, err, from)}
		}
	}
	return nil
}

// otherCommandsKeys notes each unknown key of err (ApplyFile's) that is
// the flag of a command reading no config file (nexus: of nexmux
// discover), as notDefined notes a flag given to the wrong command.
func otherCommandsKeys(app *cli.App, err error) error {
	_, err = setAside(err, func(e error) (error, bool) {
		var uk *config.UnknownKeyError
		if !errors.As(e, &uk) || uk.Key == "" {
			return e, false
		}
		owners := commandsWithFlag(app, uk.Key, func(cmd *cli.Command, _ cli.Flag) bool {
			return !slices.ContainsFunc(cmd.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), "config") })
		})
		if owners != "" {
			reads := "reads"
			if strings.Contains(owners, " and ") {
				reads = "read"
			}
			e = fmt.Errorf("%w (a flag of %s, which %s no config file)", e, owners, reads)
		}
		return e, false
	})
	return err
}

// othersKeysIgnored takes out of err (ApplyFile's) the bad values of keys
// only another command reads (`jumps:` of nexmux iptables), as warnings:
// command ignores those keys whatever they hold, as it ignores good ones.
func othersKeysIgnored(err error, command string) ([]string, error) {
	return setAside(err, func(e error) (error, bool) {
		var se *config.SettingError
		if !errors.As(e, &se) {
			return e, false
		}
		owner := config.CommandOf(se.Setting)
		if owner == "" || owner == command {
			return e, false
		}
		return fmt.Errorf("%w (ignored by %s: only nexmux %s reads it)", e, command, owner), true
	})
}

// setAside splits err's problems (a multierror's) by ignore into warnings,
// each as ignore words it, and the error of the rest; ignore may reword a
// problem it keeps.
func setAside(err error, ignore func(error) (error, bool)) ([]string, error) {
	var me *multierror.Error
	if !errors.As(err, &me) {
		return nil, err
	}
	var keep *multierror.Error
	var ignored []string
	for _, e := range me.Errors {
		if w, ok := ignore(e); ok {
			ignored = append(ignored, w.Error())
		} else {
			keep = errlist.Append(keep, w)
		}
	}
	return ignored, errlist.Err(keep)
}

// build loads and validates the configuration, every problem listed at once.
// A configuration that was read but is invalid comes back as a Runtime
// holding only Config, with the error (what daemon.Options.Reload wants).
func build(c *cli.Context) (*config.Runtime, error) {
	cfg, err := loadConfig(c)
	if cfg == nil {
		if config.Unreadable(err) {
			// Nothing of the file applied, but the command line's and
			// the environment's values are still checked, so that one
			// run names every problem; what the file may have completed
			// (routes, certificates, a pair of settings) is not asked.
			if rest, _ := loadSettings(c, ""); rest != nil {
				if !c.IsSet("listen") {
					// The file may have named another listen port: any
					// free port, which no port route is compared with.
					rest.Listen = ":0"
				}
				_, berr := rest.Build()
				_, berr = setAside(berr, func(e error) (error, bool) { return e, config.Relational(e) })
				err = errlist.Join(err, envNoted(c, berr))
			}
		}
		return nil, err
	}
	rt, berr := cfg.Build()
	oerr := overriddenProblems(c, cfg, berr, "", func(x *config.Config) error {
		_, err := x.Build()
		return err
	})
	if dropped := droppedSettings(c, cfg, err); len(dropped) > 0 {
		// A setting whose value could not be read was left out; a problem
		// of how settings go together that names it ("no routes", an
		// unpaired --key) may be only its absence.
		_, berr = setAside(berr, func(e error) (error, bool) {
			return e, config.Relational(e) && namesAny(e.Error(), dropped)
		})
	}
	berr = fileNoted(c, cfg, envNoted(c, berr))
	if err = errlist.Join(err, berr, oerr); err != nil {
		return &config.Runtime{Config: cfg}, err
	}
	rt.NoteWarnings(func(e error) error { return envNoted(c, errlist.Join(e)) })
	for _, name := range cfg.FileKeys {
		if c.IsSet(name) {
			rt.WarnOverridden(name, fmt.Sprintf("config %s: %s is overridden by --%s or %s: the file's value is not used", cfg.File, name, name, config.EnvVar(name)))
		}
	}
	return rt, nil
}

// overriddenProblems are the problems of the values the config file gives
// settings that a flag or variable overrides, each value checked by
// validate in place of the one in effect: such a value is checked as every
// other file value is, not only for its type (a "max-conns: x" under
// --max-conns was refused, a "max-conns: -1" or "log-format: xml" only
// warned of as overridden), since a reload keeps reading the file and a
// run without the flag, or check of the file alone, uses it. Only the
// settings of command ("": those every command reads) are checked, and of
// each only the problems that name it and are its own, not how it goes
// with the others (Relational, a clash): the values beside it are the
// command line's. cert and key, a pair whose halves may come from either,
// are checked only as they are in effect, and so are credentialFiles: their
// problems are the file at that path on this host, which a flag over the
// path is there to replace (the file written for another host). base is
// validate's error for cfg as it is, whose problems are not repeated.
func overriddenProblems(c *cli.Context, cfg *config.Config, base error, command string, validate func(*config.Config) error) error {
	if cfg == nil || len(cfg.FileValues) == 0 {
		return nil
	}
	file := c.String("config")
	known := map[string]bool{}
	for _, e := range problems(base) {
		known[e.Error()] = true
	}
	// One configuration with every overridden value swapped in: a value's
	// own problems do not depend on the others', and Build, which may
	// look host names up, runs once however many keys are overridden.
	alt := *cfg
	swapped := map[string]bool{}
	for _, s := range config.Settings() {
		was, given := cfg.FileValues[s.Name]
		if !given || s.Command != command || s.Name == "cert" || s.Name == "key" || slices.Contains(credentialFiles, s.Name) || !c.IsSet(s.Name) {
			continue
		}
		s.Set(&alt, was)
		swapped[s.Name] = true
	}
	if len(swapped) == 0 {
		return nil
	}
	var errs *multierror.Error
	line := alt.FileLiner()
	for _, e := range problems(validate(&alt)) {
		name, _, _ := problemSetting(e.Error())
		var clash interface{ OtherSetting() string } // route.HostClashError, config.ClashError
		if !swapped[name] || known[e.Error()] || config.Relational(e) || errors.As(e, &clash) {
			continue
		}
		at := ""
		if n := line(name, valueOf(e.Error())); n > 0 {
			at = " line " + strconv.Itoa(n)
		}
		errs = errlist.Append(errs, fmt.Errorf("%w (from config %s%s, a value --%s or %s overrides: the file's values are checked all the same)", e, file, at, name, config.EnvVar(name)))
	}
	return errlist.Err(errs)
}

// problems are err's problems, one each: a multierror's, or err alone.
func problems(err error) []error {
	if err == nil {
		return nil
	}
	var me *multierror.Error
	if errors.As(err, &me) {
		return me.Errors
	}
	return []error{err}
}

// valueOf is the value a problem quotes after the setting's name
// (`route "a=b": ...`), or "": fileNoted's reading, for a list item's line.
func valueOf(msg string) string {
	_, rest, _ := problemSetting(msg)
	if q, err := strconv.QuotedPrefix(rest); err == nil {
		v, _ := strconv.Unquote(q)
		return v
	}
	v, _, _ := strings.Cut(rest, ": ")
	return v
}

// droppedSettings names the settings whose value loadSettings could not
// read (from the file, the environment or a flag) and so left out. One
// that holds a value all the same (a file key given twice keeps its first,
// a flag replaces a bad file value) is not named: its problems are real.
func droppedSettings(c *cli.Context, cfg *config.Config, err error) []string {
	var me *multierror.Error
	if !errors.As(err, &me) {
		return nil
	}
	var names []string
	for _, e := range me.Errors {
		var se *config.SettingError
		if errors.As(e, &se) && se.Setting != "" && !inEffect(c, cfg, se.Setting) {
			names = append(names, se.Setting)
		}
	}
	return names
}

// inEffect reports whether loadSettings gave the setting a value of the
// file's or of a flag (or its environment variable).
func inEffect(c *cli.Context, cfg *config.Config, name string) bool {
	if slices.Contains(cfg.FileKeys, name) {
		return true
	}
	if !c.IsSet(name) {
		return false
	}
	for _, s := range config.Settings() {
		if s.Name != name {
			continue
		}
		if tooLong(c, &s) != nil {
			return false
		}
		if v, ok := c.Generic(name).(*rawValue); ok {
			_, err := v.parse(name, s.Default())
			return err == nil
		}
		return true
	}
	return false
}

// namesAny reports whether msg names one of the settings, as a word
// ("cert/key", "--route HOST", "socks5-listen is"): "route" is not named
// by "routes" or "--default-route", nor "mirror" by a host name
// "mirror.corp" (a '.' joins the labels of a value).
func namesAny(msg string, settings []string) bool {
	word := func(b byte) bool {
		return b == '-' || b == '_' || b == '.' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
	}
	for _, name := range settings {
		for i := 0; ; {
			j := strings.Index(msg[i:], name)
			if j < 0 {
				break
			}
			start, end := i+j, i+j+len(name)
			for start >= 2 && msg[start-2:start] == "--" {
				start -= 2
			}
			if (start == 0 || !word(msg[start-1])) && (end == len(msg) || !word(msg[end])) {
				return true
			}
			i = i + j + 1
		}
	}
	return false
}

// envNoted adds "(from NEXMUX_X)" to each problem (Build's, the iptables
// settings', nexmux iptables' and discover's) that names a setting the
// environment gave: the name alone sends the reader to a command line that
// lacks it. A clash adds "(--route from NEXMUX_ROUTE)" for the setting it
// clashes with, when that one is the environment's.
func envNoted(c *cli.Context, err error) error {
	_, err = setAside(err, func(e error) (error, bool) {
		msg := e.Error()
		name, _, pair := problemSetting(msg)
		if pair {
			var envs []string
			for _, n := range []string{"cert", "key"} {
				if env := envOrigin(c, n); env != "" {
					envs = append(envs, env)
				}
			}
			if len(envs) > 0 && !strings.Contains(msg, "(from ") {
				e = fmt.Errorf("%w (from %s)", e, strings.Join(envs, " and "))
			}
			return e, false
		}
		// A clash is the other setting's as much: the command line may
		// not hold it at all.
		// (route.HostClashError, config.ClashError)
		var clash interface{ OtherSetting() string }
		if errors.As(e, &clash) && !strings.Contains(msg, "(from ") {
			if other := clash.OtherSetting(); other != name {
				if env := envOrigin(c, other); env != "" {
					e = fmt.Errorf("%w (--%s from %s)", e, other, env)
				}
			}
		}
		if env := envOrigin(c, name); env != "" && !strings.Contains(msg, "(from ") {
			e = fmt.Errorf("%w (from %s)", e, env)
		}
		return e, false
	})
	return err
}

// problemSetting is the setting a problem's first word names (`route`,
// `--listen:`, iptables' `family` for families), the rest of the problem,
// and whether it is a cert/key pair's (`cert "C" / key "K": ...`,
// `cert/key: ...`), the key's as much as the certificate's.
func problemSetting(msg string) (name, rest string, pair bool) {
	name, rest, _ = strings.Cut(msg, " ")
	name = strings.TrimPrefix(strings.TrimSuffix(name, ":"), "--")
	if name == "family" { // iptables.ParseFamilies' word for an entry
		name = "families"
	}
	return name, rest, name == "cert/key" || name == "cert" && strings.Contains(rest, `" / key "`)
}

// fileNoted adds "(from config FILE line N)" to each problem that names a
// setting whose value the config file gave (no flag or variable over it),
// as envNoted names the variable: unnamed, the reader looks for the value
// on a command line that lacks it. A quoted value of a list names its
// item's line. Run after envNoted, whose notes check for "(from ".
func fileNoted(c *cli.Context, cfg *config.Config, err error) error {
	file := c.String("config")
	if cfg == nil || file == "" || len(cfg.FileLines) == 0 {
		return err
	}
	fileLine := cfg.FileLiner()
	isSet := map[string]bool{} // c.IsSet looks the flag up anew each time
	set := func(name string) bool {
		v, ok := isSet[name]
		if !ok {
			v = c.IsSet(name)
			isSet[name] = v
		}
		return v
	}
	_, err = setAside(err, func(e error) (error, bool) {
		msg := e.Error()
		if strings.Contains(msg, "(from ") {
			return e, false
		}
		name, rest, pair := problemSetting(msg)
		names, values := []string{name}, []string{""}
		if pair {
			names, values = []string{"cert", "key"}, []string{"", ""}
		}
		// A list's value is quoted after the name, or unquoted before a
		// colon (a clash: `route h=r: h is already routed`): its item's
		// line, when it is an item.
		if q, qerr := strconv.QuotedPrefix(rest); qerr == nil {
			values[0], _ = strconv.Unquote(q)
			if k, ok := strings.CutPrefix(rest[len(q):], " / key "); ok && pair {
				if q, qerr := strconv.QuotedPrefix(k); qerr == nil {
					values[1], _ = strconv.Unquote(q)
				}
			}
		} else if v, _, ok := strings.Cut(rest, ": "); ok && !pair {
			values[0] = v
		}
		var lines []string
		for i, n := range names {
			if line := fileLine(n, values[i]); line > 0 && !set(n) {
				lines = append(lines, strconv.Itoa(line))
			}
		}
		switch len(lines) {
		case 1:
			e = fmt.Errorf("%w (from config %s line %s)", e, file, lines[0])
		case 2:
			e = fmt.Errorf("%w (from config %s lines %s and %s)", e, file, lines[0], lines[1])
		}
		return e, false
	})
	return err
}

// invalid reports a configuration error: every problem, one per line.
func invalid(err error) error {
	return cli.Exit("nexmux: invalid configuration:\n"+indent(config.HideCredentials(err.Error())), exitInvalid)
}

// refused is invalid after the warnings runApp found in the environment: a
// misspelt variable (NEXMUX_ROUTES) may be why the configuration is
// invalid, and otherwise they come only with a valid one.
func refused(c *cli.Context, err error) error {
	printWarnings(c, envWarnings(c))
	return invalid(err)
}

// envWarnings are runApp's warnings about the environment.
func envWarnings(c *cli.Context) []string {
	w, _ := c.App.Metadata[envWarningsKey].([]string)
	return w
}

// discoverFailed is discover's exit 1; several problems (MakePlan lists
// them all) go one a line below the command's name.
func discoverFailed(err error) error {
	if msg := err.Error(); strings.Contains(msg, "\n") {
		return cli.Exit("nexmux discover:\n"+indent(msg), 1)
	}
	return cli.Exit("nexmux discover: "+err.Error(), 1)
}

// writeOutput writes a command's output: a write that fails (a full disk,
// a closed pipe) is exit 1 with the reason, never output cut short that a
// script or iptables-restore would take as whole.
func writeOutput(c *cli.Context, command, what, out string) error {
	if _, err := io.WriteString(c.App.Writer, out); err != nil {
		return cli.Exit(fmt.Sprintf("nexmux %s: writing %s: %v", command, what, err), 1)
	}
	return nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ")
}

// usageError makes a usage error (unknown flag, unparsable value) exit like
// an invalid configuration: status 2, nothing started.
func usageError(c *cli.Context, err error, _ bool) error {
	// Go's flag package names the flag with one dash; help, README and
	// every other message of nexmux use two.
	for _, msg := range []string{"flag needs an argument: -", "flag provided but not defined: -"} {
		if name, ok := strings.CutPrefix(err.Error(), msg); ok && !strings.HasPrefix(name, "-") {
			err = errors.New(msg + "-" + name)
		}
	}
	if flag, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
		err = notDefined(c, flag)
	}
	return invalid(err)
}

func newApp() *cli.App {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprint(c.App.Writer, versionText()) }
	return &cli.App{
		Name:         "nexmux",
		Usage:        "one TLS listener in front of every Docker repository of a Nexus Repository 3",
		OnUsageError: usageError,
		// A misspelt command is a usage error too (urfave/cli: exit 3, "No help topic").
		CommandNotFound: func(c *cli.Context, name string) {
			names := []string{"serve", "check", "iptables", "discover", "version"}
			hint := ""
			if like := config.RefusedMisspeller(names)(name); like != "" {
				hint = ", did you mean " + like + "?"
			}
			fmt.Fprintf(c.App.ErrWriter, "nexmux: unknown command %q (commands: %s%s)\n", name, strings.Join(names, ", "), hint)
			cli.OsExiter(exitInvalid)
		},
		// --version and `nexmux version` print the same build info.
		Version: shortVersion(),
		Commands: []*cli.Command{
			versionCommand(),
			{
				Name:               "serve",
				Usage:              "serve the routes",
				Flags:              configFlags("serve"),
				CustomHelpTemplate: withExamples(),
				OnUsageError:       usageError,
				Action: func(c *cli.Context) error {
					// SIGHUP's default action ends the process: until Run
					// takes it (a reload), and after, one is dropped. systemd
					// would not restart a process a SIGHUP ended.
					signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
					// First, while the heap has freed nothing (see
					// memtrim.HeapFloor): a later block would reuse pages
					// the configuration left behind, and be resident.
					floor, _ := memtrim.NewHeapFloor(memtrim.FloorSize(os.Getenv))
					defer floor.Release() // also what keeps it held while serving
					read := func() (*config.Runtime, error) { return build(c) }
					b, states, err := daemon.ReadConfig(read)
					if err != nil {
						return refused(c, err)
					}
					lw := daemon.NewLogWriter(os.Stderr, daemon.AccessLogDelay)
					defer lw.Close()
					log, access := daemon.NewLoggers(lw, b.Config.LogFormat, b.Config.LogLevel)
					d, err := daemon.New(b, daemon.Options{Logger: log, AccessLog: access, Reload: read, FileStates: states})
					if err != nil {
						return cli.Exit("nexmux: "+err.Error(), 1)
					}
					if err := d.Run(context.Background()); err != nil {
						// Several listeners that cannot be bound: one a line.
						if me := (*multierror.Error)(nil); errors.As(err, &me) && len(me.Errors) > 1 {
							return cli.Exit("nexmux: cannot start:\n"+indent(err.Error()), 1)
						}
						return cli.Exit("nexmux: "+err.Error(), 1)
					}
					return nil
				},
			},
			{
				Name:  "iptables",
				Usage: "print iptables-restore rules that REDIRECT the --port connector ports to --listen (IPv4 and IPv6 alike)",
				Description: "Apply with: nexmux iptables --port 8082=team-a ... | iptables-restore --noflush (and ip6tables-restore),\n" +
					"or let --load apply (and --load --delete remove) them idempotently.",
				// Its own flags are settings of Command "iptables": NEXMUX_<FLAG>
				// and keys of the config file serve and check share.
				Flags:        configFlags("iptables"),
				OnUsageError: usageError,
				Action:       iptablesAction,
			},
			{
				Name:  "discover",
				Usage: "read Nexus's docker repositories over its REST API and print a ready-to-use mapping",
				// stringFlag, as for the settings: an empty variable is unset.
				// DefaultText: help writes the default as README does, unquoted.
				Flags: []cli.Flag{
					// Required in Action, not by urfave/cli: its check stops
					// there (exit 1), before the other problems are seen.
					&stringFlag{cli.StringFlag{Name: "nexus", Usage: "Nexus base `URL` (http://nexus:8081[/ctx]) (required)", EnvVars: env("nexus")}},
					&stringFlag{cli.StringFlag{Name: "user", Usage: "Nexus `USER` allowed to read repository settings (required)", EnvVars: env("user")}},
					&stringFlag{cli.StringFlag{Name: "password-file", Usage: "`FILE` holding the password (never a flag: it would show in ps) (required)", EnvVars: env("password-file")}},
					&stringFlag{cli.StringFlag{Name: "domain", Usage: "give every repository the name <repo>.`DOMAIN`", EnvVars: env("domain")}},
					&stringFlag{cli.StringFlag{Name: "format", Value: "flags", DefaultText: "flags", Usage: "print the mapping as `flags|yaml`: command-line flags or a config file", EnvVars: env("format")}},
				},
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					// A misspelt NEXMUX_DOMIAN would leave --domain unset
					// without a word.
					printWarnings(c, envWarnings(c))
					errs := argProblems(c)
					// A flag given empty over its variable is that problem
					// alone, not also "required" or a bad format: --domain ""
					// over NEXMUX_DOMAIN dropped the domain without a word.
					emptied := map[string]bool{}
					for _, name := range []string{"nexus", "user", "password-file", "domain", "format"} {
						if err := emptyOver(nil, "", name, c.String(name)); err != nil {
							errs = append(errs, err)
							emptied[name] = true
						}
					}
					for _, name := range []string{"nexus", "user", "password-file"} {
						if c.String(name) == "" && !emptied[name] {
							errs = append(errs, fmt.Errorf("--%s is required", name))
						}
					}
					if n := c.String("nexus"); n != "" {
						if err := discover.CheckNexusURL(n); err != nil {
							errs = append(errs, err)
						}
					}
					if err := discover.CheckUser(c.String("user")); err != nil {
						errs = append(errs, err)
					}
					if err := discover.CheckDomain(c.String("domain")); err != nil {
						errs = append(errs, err)
					}
					// Any case, as every word a setting takes.
					format := strings.ToLower(c.String("format"))
					if format != "flags" && format != "yaml" && !emptied["format"] {
						errs = append(errs, fmt.Errorf("format %q: want flags or yaml", c.String("format")))
					}
					var pw string
					if f := c.String("password-file"); f != "" {
						var err error
						if pw, err = discover.ReadPassword(f); err != nil {
							errs = append(errs, err)
						}
					}
					if err := errlist.Join(errs...); err != nil {
						return invalid(envNoted(c, err))
					}
					repos, err := discover.Fetch(c.Context, nil, c.String("nexus"), c.String("user"), pw)
					if err != nil {
						return discoverFailed(err)
					}
					plan, err := discover.MakePlan(repos, c.String("domain"))
					if err != nil {
						return discoverFailed(err)
					}
					plan.Upstream = strings.TrimRight(c.String("nexus"), "/")
					out := plan.Flags()
					if format == "yaml" {
						out = plan.YAML()
					}
					// The exit status is what keeps a cut short file (a full
					// disk) from being moved into place as the configuration.
					return writeOutput(c, "discover", "the mapping", out)
				},
			},
			{
				Name:               "check",
				Usage:              "validate the configuration and print the route table",
				Flags:              configFlags("check"),
				CustomHelpTemplate: withExamples(),
				OnUsageError:       usageError,
				Action: func(c *cli.Context) error {
					b, err := build(c)
					if b != nil {
						ierr := b.Config.IptablesProblems()
						err = errlist.Join(err, fileNoted(c, b.Config, envNoted(c, ierr)),
							overriddenProblems(c, b.Config, ierr, "iptables", (*config.Config).IptablesProblems))
					} else if rest, _ := loadSettings(c, ""); rest != nil {
						// The file could not be read: the command line's
						// and environment's iptables settings are still
						// checked, as build checks the others.
						err = errlist.Join(err, envNoted(c, rest.IptablesProblems()))
					}
					if err != nil {
						return refused(c, err)
					}
					// The warnings serve would log: valid, but not as meant.
					printWarnings(c, b.Warnings)
					return writeOutput(c, "check", "the description", b.Describe())
				},
			},
		},
	}
}

func main() {
	if err := runApp(newApp(), os.Args); err != nil {
		var ec cli.ExitCoder
		if !errors.As(err, &ec) {
			fmt.Fprintln(os.Stderr, "nexmux:", err)
			os.Exit(1)
		}
	}
}

// ignoreForDelete keeps of err what stops --delete: removing the rules
// needs only the chain, the jumps and the families, so a bad value of any
// other setting (one the daemon would refuse), or a file key that names no
// setting, is a warning, not a reason to leave the redirects in place when
// nexmux stops. A key that may be a misspelt iptables setting still stops
// it: the default chain's rules, perhaps another instance's, would go.
func ignoreForDelete(c *cli.Context, err error) error {
	ignored, err := setAside(err, func(e error) (error, bool) {
		var se *config.SettingError
		if errors.As(e, &se) && config.CommandOf(se.Setting) != "iptables" {
			return fmt.Errorf("%w (ignored by --delete)", e), true
		}
		var uk *config.UnknownKeyError
		if errors.As(e, &uk) {
			if like := uk.Resembles("iptables"); like != "" {
				return fmt.Errorf("%w (not ignored by --delete: it may be a misspelt %s)", e, like), false
			}
			return fmt.Errorf("%w (ignored by --delete)", e), true
		}
		return e, false
	})
	printWarnings(c, ignored)
	return err
}

// deleteWithoutFile is the configuration of `iptables --delete` when its
// --config file could not be read (fileErr): retiring a deployment, the
// file may go before the rules. --delete needs the chain alone, so one
// given by flag or environment is enough, and the file is a warning. Without
// one the file may have named another chain, and the default chain's rules
// may be another instance's: refused, saying what to give. Without
// --delete it is refused too, with the command line's problems. A nil
// Config comes with the error to report.
func deleteWithoutFile(c *cli.Context, fileErr error) (*config.Config, error) {
	cfg, err := loadSettings(c, "")
	if !cfg.IptablesDelete {
		// What the command line and environment gave is still checked,
		// every problem at once, as check does.
		return nil, errlist.Join(fileErr, portRouteProblems(c, cfg), cfg.IptablesProblems())
	}
	// An empty --chain (a script's unset variable) is the default: no
	// chain named either, and over NEXMUX_CHAIN is refused (emptyOver),
	// cfg keeping the default chain.
	if !c.IsSet("chain") || cfg.IptablesChain == "" || c.String("chain") == "" {
		load := ""
		if cfg.IptablesLoad {
			load = " --load"
		}
		// With what else --delete would refuse: every problem at once.
		return nil, errlist.Join(fileErr, cfg.IptablesProblems(), fmt.Errorf("to delete without the config file, name the chain it set (%s, the default, unless it had chain:) with --chain or %s: nexmux iptables%s --delete --chain %s",
			iptables.DefaultChain, config.EnvVar("chain"), load, iptables.DefaultChain))
	}
	// err holds fileErr's other problems (the command line's) again.
	var warnings []string
	var me *multierror.Error
	if errors.As(fileErr, &me) {
		for _, e := range me.Errors {
			if config.Unreadable(e) {
				warnings = append(warnings, fmt.Sprintf("%v (ignored by --delete: removing chain %s)", e, cfg.IptablesChain))
			}
		}
	}
	printWarnings(c, warnings)
	return cfg, err
}

// portRouteProblems are those of the --port routes and --listen of cfg, a
// configuration without its file: a port route is compared with the listen
// port only when the command line or environment gave it, as the file may
// have named another.
func portRouteProblems(c *cli.Context, cfg *config.Config) error {
	if c.IsSet("listen") {
		_, _, err := cfg.PortRoutes()
		return err
	}
	_, err := route.Build(route.Spec{Ports: cfg.Port})
	return err
}

// printWarnings writes what a command found valid but not as meant.
func printWarnings(c *cli.Context, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintln(c.App.ErrWriter, "nexmux: warning:", errlist.OneLine(config.HideCredentials(w)))
	}
}

// iptablesAction prints, loads or removes the REDIRECT rules of the port
// routes. Every problem of the configuration, the port routes, the chain and
// the families is listed at once, before anything is printed or loaded.
func iptablesAction(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if cfg == nil {
		if cfg, err = deleteWithoutFile(c, err); cfg == nil {
			return refused(c, envNoted(c, err))
		}
	}
	// iptables reads --port too: say what was ignored, as check does.
	printWarnings(c, cfg.EnvWarnings)
	if cfg.IptablesDelete {
		err = ignoreForDelete(c, err)
	}
	errs := errlist.Append(nil, err)
	errs = errlist.Append(errs, cfg.EmptyChainProblem())
	r := iptables.Rules{Chain: cfg.IptablesChain, Jumps: cfg.IptablesJumps}
	// The chain is checked whatever else is wrong: Validate checks it
	// with the ports, ValidateChain alone where there are none to check.
	if cfg.IptablesDelete {
		errs = errlist.Append(errs, r.ValidateChain())
	} else if listenPort, t, perr := cfg.PortRoutes(); perr != nil {
		errs = errlist.Append(errlist.Append(errs, perr), r.ValidateChain())
	} else {
		r.ListenPort, r.Ports = listenPort, t.Ports()
		errs = errlist.Append(errs, r.Validate())
		errs = errlist.Append(errs, errlist.Join(cfg.RedirectCaptures(r.Ports)...))
		errs = errlist.Append(errs, errlist.Join(cfg.RedirectLoops(r.Ports)...))
		if w := iptables.ListenWarning(cfg.Listen); w != "" {
			printWarnings(c, []string{w})
		}
	}
	if cfg.BindPorts && !cfg.IptablesDelete {
		// PREROUTING's REDIRECT comes before the socket lookup: the rules
		// would move the bound ports' connections to --listen, past their
		// own listeners. Deleting the rules of before the switch is left.
		errs = errlist.Append(errs, errors.New("--bind-ports: nexmux binds the --port ports itself: they need no REDIRECT rules, and loaded, the rules would take those ports' connections to --listen instead; to remove rules loaded before: nexmux iptables --load --delete (same --chain)"))
	}
	fams, ferr := iptables.ParseFamilies(cfg.IptablesFamilies)
	oerr := overriddenProblems(c, cfg, cfg.IptablesProblems(), "iptables", (*config.Config).IptablesProblems)
	if cfg.IptablesDelete && oerr != nil {
		// --delete needs only the chain in effect: a bad file value
		// under it must not keep the redirects in place.
		var ws []string
		for _, e := range problems(oerr) {
			ws = append(ws, fmt.Sprintf("%v (ignored by --delete: removing chain %s)", e, cfg.IptablesChain))
		}
		printWarnings(c, ws)
		oerr = nil
	}
	if err := errlist.Err(errlist.Append(errs, ferr)); err != nil || oerr != nil {
		return invalid(errlist.Join(fileNoted(c, cfg, envNoted(c, err)), oerr))
	}
	if !cfg.IptablesLoad {
		var out string
		if cfg.IptablesDelete {
			out, err = r.Delete()
		} else {
			out, err = r.Apply(fams...)
		}
		if err != nil { // validated above
			return invalid(err)
		}
		return writeOutput(c, "iptables", "the rules", out)
	}
	if cfg.IptablesDelete {
		err = r.Uninstall(fams, c.App.ErrWriter)
	} else {
		err = r.Install(fams, c.App.ErrWriter)
	}
	if err != nil {
		return cli.Exit("nexmux iptables: "+err.Error(), 1)
	}
	return nil
}
