package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/internal/config"
)

// typedFlag is the flag of an int, duration or bool setting. It keeps the
// text it is given and loadConfig parses it, so one run reports every
// unparsable value together with every other problem: flag.FlagSet and
// urfave/cli's typed flags stop at the first value they cannot parse.
type typedFlag struct {
	cli.GenericFlag
	def     any    // the setting's default: int, time.Duration or bool
	defText string // shown as "(default: ...)"; empty shows none
	v       *rawValue
}

// rawValue is a typedFlag's value: the text given and where it came from.
type rawValue struct {
	text   string
	env    string // the environment variable text came from; "" for the command line
	isBool bool
}

func (v *rawValue) Set(s string) error { v.text, v.env = s, ""; return nil }

func (v *rawValue) String() string {
	if v == nil {
		return ""
	}
	return v.text
}

// IsBoolFlag lets flag.FlagSet take a bare --name as --name=true.
func (v *rawValue) IsBoolFlag() bool { return v != nil && v.isBool }

// newTypedFlag is the flag of a setting whose default def is an int, a
// time.Duration or a bool. Help shows defText, the effective default, when
// set; otherwise a zero int or duration whose usage names its own default
// (a built-in one applied later) shows no "(default: 0s)".
func newTypedFlag(name, usage, defText string, envs []string, def any) *typedFlag {
	_, isBool := def.(bool)
	v := &rawValue{isBool: isBool}
	f := &typedFlag{def: def, v: v, defText: defText}
	switch {
	case defText != "":
		// the effective default, where the zero value means "built in"
	case (def == 0 || def == time.Duration(0)) && strings.Contains(usage, "(default "):
		// the usage says it
	default:
		f.defText = fmt.Sprint(def)
		if d, ok := def.(time.Duration); ok {
			f.defText = config.DurationText(d)
		}
	}
	f.GenericFlag = cli.GenericFlag{Name: name, Usage: usage, EnvVars: envs, Value: v}
	return f
}

// TakesValue is false for a bool flag, so help shows no placeholder.
func (f *typedFlag) TakesValue() bool { return !f.v.isBool }

func (f *typedFlag) GetDefaultText() string { return f.defText }

// String is the help line; GenericFlag's own would format the embedded
// flag, not these overrides.
func (f *typedFlag) String() string { return cli.FlagStringer(f) }

// Apply reads the environment variable, then registers the value; neither
// can fail.
func (f *typedFlag) Apply(set *flag.FlagSet) error {
	if e, val := fromEnv(f.EnvVars); e != "" {
		f.v.text, f.v.env = val, e
		f.HasBeenSet = true
	}
	set.Var(f.v, f.Name, f.Usage)
	return nil
}

// fromEnv returns the first of envs set to a non-empty value, and the
// value: an empty variable counts as unset, for every setting ("" when
// none is set).
func fromEnv(envs []string) (name, val string) {
	for _, e := range envs {
		if v := os.Getenv(e); v != "" {
			return e, v
		}
	}
	return "", ""
}

// parse returns the value, of the default's type, or an error naming the
// flag (and the environment variable the text came from).
func (v *rawValue) parse(name string, def any) (any, error) {
	val, err := config.ParseText(def, v.text)
	if err != nil {
		from := ""
		if v.env != "" {
			from = " (from " + v.env + ")"
		}
		return nil, &config.SettingError{Setting: name, Err: fmt.Errorf("%s %q%s: %v", name, v.text, from, err)}
	}
	return val, nil
}

// listFlag is the flag of a repeatable setting. Each --name value is one
// item, commas included, as a config file's list item is; only the
// environment variable separates items with commas (Setting.SplitEnv).
// urfave/cli's StringSliceFlag splits both, so a certificate path with a
// comma could not be given and "--upstream a,b" meant two nodes where the
// file's "upstream: a,b" was one.
type listFlag struct {
	cli.GenericFlag
	def     []string // the setting's default
	defText string
	v       *listValue
}

// listValue is a listFlag's value: the command line's items, or the text
// of the environment variable.
type listValue struct {
	items   []string
	onFlag  bool   // the command line gave items: the environment's are dropped
	envText string // the environment variable's text
}

func (v *listValue) Set(s string) error {
	if !v.onFlag {
		v.items, v.onFlag = nil, true
	}
	v.items = append(v.items, s)
	return nil
}

func (v *listValue) String() string {
	if v == nil {
		return ""
	}
	return strings.Join(v.items, ",")
}

func newListFlag(name, usage, defText string, envs []string, def []string) *listFlag {
	v := &listValue{}
	if defText == "" && len(def) > 0 {
		defText = strings.Join(def, ", ")
	}
	return &listFlag{GenericFlag: cli.GenericFlag{Name: name, Usage: usage, EnvVars: envs, Value: v}, def: def, defText: defText, v: v}
}

func (f *listFlag) GetDefaultText() string { return f.defText }
func (f *listFlag) String() string         { return cli.FlagStringer(f) }

// Apply reads the environment variable, then registers the value. One
// that gives no item (blanks and commas) is unset, as an empty one is: set,
// it would clear the file's list without a word.
func (f *listFlag) Apply(set *flag.FlagSet) error {
	if e, val := fromEnv(f.EnvVars); e != "" && strings.TrimFunc(val, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) != "" {
		f.v.envText = val
		f.HasBeenSet = true
	}
	set.Var(f.v, f.Name, f.Usage)
	return nil
}

// values is what the setting is given: the command line's items, or the
// environment variable split at commas.
func (v *listValue) values(s *config.Setting) []string {
	if v.onFlag {
		return v.items
	}
	return s.SplitEnv(v.envText)
}

// stringFlag is the flag of a string setting; an empty environment
// variable counts as unset, as for every setting (urfave/cli would take it
// as the empty string: NEXMUX_LISTEN= was an invalid listen address).
type stringFlag struct{ cli.StringFlag }

func (f *stringFlag) Apply(set *flag.FlagSet) error {
	all := f.EnvVars
	f.EnvVars = nil
	if e, _ := fromEnv(all); e != "" {
		f.EnvVars = []string{e}
	}
	err := f.StringFlag.Apply(set)
	f.EnvVars = all
	return err
}

// envOrigin names the environment variable the value of the setting name
// came from: "" when the command line gave it, or nothing did. A string
// flag keeps no record, so its value counts as the environment's when the
// two are the same text.
func envOrigin(c *cli.Context, name string) string {
	if c.Command == nil {
		return ""
	}
	for _, f := range c.Command.Flags {
		switch f := f.(type) {
		case *typedFlag:
			if f.Name == name {
				return f.v.env
			}
		case *listFlag:
			if f.Name == name && !f.v.onFlag && f.v.envText != "" {
				e, _ := fromEnv(f.EnvVars)
				return e
			}
		case *stringFlag:
			if f.Name == name {
				if e, val := fromEnv(f.EnvVars); e != "" && c.String(name) == val {
					return e
				}
				return ""
			}
		}
	}
	return ""
}

// configFlag is --config. It keeps every file the command line names, so a
// second one is reported instead of silently replacing the first (and every
// route that held); NEXMUX_CONFIG gives way to the command line's.
type configFlag struct {
	cli.GenericFlag
	v *configValue
}

type configValue struct {
	paths   []string
	fromEnv bool
}

func (v *configValue) Set(s string) error {
	if v.fromEnv {
		v.paths, v.fromEnv = nil, false
	}
	v.paths = append(v.paths, s)
	return nil
}

// String is the last file named, which is what c.String("config") reads.
func (v *configValue) String() string {
	if v == nil || len(v.paths) == 0 {
		return ""
	}
	return v.paths[len(v.paths)-1]
}

func newConfigFlag(usage string) *configFlag {
	v := &configValue{}
	return &configFlag{GenericFlag: cli.GenericFlag{Name: "config", Usage: usage, EnvVars: env("config"), Value: v}, v: v}
}

func (f *configFlag) TakesValue() bool { return true }

func (f *configFlag) String() string { return cli.FlagStringer(f) }

func (f *configFlag) Apply(set *flag.FlagSet) error {
	if _, val := fromEnv(f.EnvVars); val != "" {
		f.v.paths, f.v.fromEnv = []string{val}, true
		f.HasBeenSet = true
	}
	set.Var(f.v, f.Name, f.Usage)
	return nil
}

// problem reports a --config given more than once.
func (v *configValue) problem() error {
	if len(v.paths) < 2 {
		return nil
	}
	return &config.SettingError{Setting: "config", Err: fmt.Errorf("--config given %d times (%s): nexmux reads one config file, and a second would replace the first; put the settings in one file", len(v.paths), strings.Join(v.paths, ", "))}
}
