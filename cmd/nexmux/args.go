package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/internal/config"
)

// unknownFlagsKey is where runApp leaves a command's unknown flags, in
// App.Metadata, for the command to list with every other problem.
const unknownFlagsKey = "nexmux.unknownFlags"

// runApp runs the CLI. Go's flag parser stops at the first unknown flag,
// so a misspelt flag would hide every other problem of the command line;
// runApp takes unknown flags out first and the command reports them
// together with the rest (argProblems), exit status 2, nothing started.
func runApp(app *cli.App, args []string) error {
	if app.Metadata == nil {
		app.Metadata = map[string]any{}
	}
	var warnings []string
	if w := dropServiceLink(); w != "" {
		warnings = append(warnings, w)
	}
	warnings = append(warnings, misspeltEnv(app, os.Environ())...)
	args, unknown, missing, stray := stripUnknownFlags(app, args)
	warnings = append(warnings, repeatedFlags(app, args)...)
	if len(warnings) > 0 {
		app.Metadata[envWarningsKey] = warnings
	}
	if len(unknown) > 0 {
		app.Metadata[unknownFlagsKey] = unknown
	}
	if missing != "" {
		app.Metadata[missingValueKey] = missing
	}
	if len(stray) > 0 {
		app.Metadata[strayArgsKey] = stray
	}
	return app.Run(args)
}

// missingValueKey is where runApp leaves a last flag given without its
// value, taken out for the command to report with the rest: flag parsing
// would stop at it and report nothing else.
const missingValueKey = "nexmux.missingValue"

// strayArgsKey is where runApp leaves the arguments that are no flag nor a
// flag's value, taken out for the command to report with the rest: flag
// parsing would stop at the first and drop every flag after it.
const strayArgsKey = "nexmux.strayArgs"

// envWarningsKey is where runApp leaves what it found odd in the
// environment and on the command line (a flag given twice), for loadConfig
// to hand to the configuration's warnings (logged by serve through its
// logger, printed by check).
const envWarningsKey = "nexmux.envWarnings"

// stripUnknownFlags returns args without the flags the command named by
// args[1] does not define, and those flags, and without a last flag that
// wants a value and has none, and that flag's name. It reads the arguments as
// flag.FlagSet does: "-name" or "--name", "=value" or the next argument
// as the value of a flag that takes one, up to "--" or the first argument
// that is not a flag. An unknown flag without "=" takes the next argument
// with it unless that is a flag: the commands take no arguments, so it can
// only be the unknown flag's value, and left in place it would end the
// parsing and lose every flag after it. Any other argument that is no flag
// (the "true" of "--bind-ports true") is taken out as stray, for the same
// reason, and the flags after it are read.
func stripUnknownFlags(app *cli.App, args []string) (kept, unknown []string, missing string, stray []string) {
	if len(args) < 3 {
		return args, nil, "", nil
	}
	cmd := app.Command(args[1])
	if cmd == nil || len(cmd.Flags) == 0 {
		return args, nil, "", nil
	}
	takesValue := map[string]bool{"help": false, "h": false}
	for _, f := range cmd.Flags {
		tv := true
		if d, ok := f.(cli.DocGenerationFlag); ok {
			tv = d.TakesValue()
		}
		for _, n := range f.Names() {
			takesValue[n] = tv
		}
	}
	kept = append([]string(nil), args[:2]...)
	i := 2
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			stray = append(stray, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		tv, known := takesValue[name]
		next := i+1 < len(args)
		switch {
		case known && tv && !hasValue && !next:
			missing = "--" + name
		case known:
			kept = append(kept, a)
			if tv && !hasValue && next {
				i++
				kept = append(kept, args[i])
			}
		default:
			flag, _, _ := strings.Cut(a, "=")
			unknown = append(unknown, flag)
			if !hasValue && next && !strings.HasPrefix(args[i+1], "-") {
				i++
			}
		}
	}
	return append(kept, args[i:]...), unknown, missing, stray
}

// repeatedFlags warns of each single-value flag that args (known flags
// only: stripUnknownFlags' kept) give more than one value: the last is
// used, as most tools do and as a script that appends an override expects,
// but the operator may be reading the first. Values all the same change
// nothing and draw nothing; a repeatable flag's values are its list, and
// --config twice is a problem of its own.
func repeatedFlags(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return nil
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return nil
	}
	takesValue, single := map[string]bool{}, map[string]bool{}
	for _, f := range cmd.Flags {
		tv := true
		if d, ok := f.(cli.DocGenerationFlag); ok {
			tv = d.TakesValue()
		}
		_, list := f.(*listFlag)
		_, config := f.(*configFlag)
		for _, n := range f.Names() {
			takesValue[n], single[n] = tv, !list && !config
		}
	}
	var order []string
	given := map[string][]string{}
	for i := 2; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		tv := takesValue[name]
		switch {
		case tv && !hasValue && i+1 < len(args):
			i++
			value = args[i]
		case !tv && !hasValue:
			value = "true" // a bare bool flag
		}
		if !single[name] {
			continue
		}
		if _, seen := given[name]; !seen {
			order = append(order, name)
		}
		given[name] = append(given[name], value)
	}
	var out []string
	for _, name := range order {
		vals := given[name]
		if len(vals) < 2 || !slices.ContainsFunc(vals, func(v string) bool { return v != vals[0] }) {
			continue
		}
		quoted := make([]string, len(vals))
		for i, v := range vals {
			quoted[i] = strconv.Quote(v)
		}
		out = append(out, fmt.Sprintf("--%s given %d times (%s): the last, %s, is used", name, len(vals), strings.Join(quoted, ", "), quoted[len(quoted)-1]))
	}
	return out
}

// argProblems are the command line's problems that flag parsing does not
// report: unknown flags and stray arguments ("--bind-ports true --route
// ..."), which runApp took out so that the flags after them are read, and
// the arguments after "--".
func argProblems(c *cli.Context) []error {
	var errs []error
	unknown, _ := c.App.Metadata[unknownFlagsKey].([]string)
	for _, f := range unknown {
		errs = append(errs, notDefined(c, f))
	}
	if f, _ := c.App.Metadata[missingValueKey].(string); f != "" {
		errs = append(errs, fmt.Errorf("flag needs an argument: %s", f))
	}
	stray, _ := c.App.Metadata[strayArgsKey].([]string)
	for _, a := range stray {
		errs = append(errs, fmt.Errorf("unexpected argument %q: settings are flags (a bool flag takes --name=false, not --name false)", a))
	}
	// What runApp left: the arguments after "--", where parsing stopped.
	if c.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q: settings are flags, and none after it was read (a bool flag takes --name=false, not --name false)", c.Args().First()))
	}
	return errs
}

// notDefined is the problem of flag (as typed: --chain, -chain), which
// the command of c does not define, naming the commands that do: given
// to the wrong command (serve --chain), the flag is more than unknown.
// Else it names the flag it is likely a misspelling of (--rout: --route),
// one of the command's own first, another command's with its owners
// (serve --chian: --chain, a flag of nexmux iptables), as an unknown
// config file key does.
func notDefined(c *cli.Context, flag string) error {
	name := strings.TrimLeft(flag, "-")
	msg := "flag provided but not defined: " + flag
	if owners := flagOwners(c.App, name); owners != "" {
		msg += " (a flag of " + owners + ")"
	} else if like, owners := flagMeant(c, name); owners != "" {
		msg += " (did you mean --" + like + ", a flag of " + owners + "?)"
	} else if like != "" {
		msg += " (did you mean --" + like + "?)"
	}
	return errors.New(msg)
}

// flagMeant is the flag that name (no flag of the command of c) likely
// misspells, and "" for one of that command's own flags (hidden ones
// included: check takes iptables' flags), else the commands whose flag it
// is (flagOwners): ("", "") for none.
func flagMeant(c *cli.Context, name string) (like, owners string) {
	names := func(cmds ...*cli.Command) []string {
		var out []string
		for _, cmd := range cmds {
			for _, f := range cmd.Flags {
				v, ok := f.(cli.VisibleFlag)
				if cmd != c.Command && ok && !v.IsVisible() {
					continue
				}
				for _, n := range f.Names() {
					if len(n) > 1 { // -h is a letter from every short typo
						out = append(out, n)
					}
				}
			}
		}
		return out
	}
	if c.Command != nil {
		if like = config.RefusedMisspeller(names(c.Command))(name); like != "" {
			return like, ""
		}
	}
	others := slices.DeleteFunc(slices.Clone(c.App.Commands), func(cmd *cli.Command) bool { return cmd == c.Command })
	if like = config.RefusedMisspeller(names(others...))(name); like != "" {
		return like, flagOwners(c.App, like)
	}
	return "", ""
}

// flagOwners names the commands of app that show flag name, in help's
// order ("nexmux iptables", "nexmux serve, iptables and check"), or "":
// a hidden flag (check's copy of an iptables one) is the other command's.
func flagOwners(app *cli.App, name string) string {
	return commandsWithFlag(app, name, func(cmd *cli.Command, f cli.Flag) bool {
		v, ok := f.(cli.VisibleFlag)
		return !ok || v.IsVisible()
	})
}

// commandsWithFlag names, as flagOwners does, the commands of app with a
// flag called name that keep(cmd, flag) accepts, so that every note of
// which commands a flag belongs to reads the same.
func commandsWithFlag(app *cli.App, name string, keep func(*cli.Command, cli.Flag) bool) string {
	var owners []string
	for _, cmd := range app.Commands {
		if slices.ContainsFunc(cmd.Flags, func(f cli.Flag) bool {
			return slices.Contains(f.Names(), name) && keep(cmd, f)
		}) {
			owners = append(owners, cmd.Name)
		}
	}
	switch n := len(owners); n {
	case 0:
		return ""
	case 1:
		return "nexmux " + owners[0]
	default:
		return "nexmux " + strings.Join(owners[:n-1], ", ") + " and " + owners[n-1]
	}
}

// dropServiceLink unsets NEXMUX_PORT when Kubernetes set it, and says so:
// a Service named nexmux in the pod's namespace gives every pod
// NEXMUX_PORT=tcp://IP:PORT (with NEXMUX_SERVICE_HOST; "service links"),
// which is no --port value, and nexmux would refuse to start over a name
// nobody chose for it.
func dropServiceLink() string {
	name := config.EnvVar("port")
	v := os.Getenv(name)
	if v == "" || os.Getenv(config.EnvVar("service-host")) == "" {
		return ""
	}
	for _, proto := range []string{"tcp://", "udp://", "sctp://"} {
		if strings.HasPrefix(v, proto) {
			_ = os.Unsetenv(name)
			return fmt.Sprintf("ignoring %s=%s: Kubernetes sets it for a Service named nexmux (service links); it is no --port value. enableServiceLinks: false in the pod spec turns it off", name, v)
		}
	}
	return ""
}

// misspeltEnv names the NEXMUX_ variables of environ that no flag reads
// but that are a letter or two from one that does (NEXMUX_ROUTES,
// NEXMUX_MAXCONNS): read by nothing, such a variable would leave its
// setting at the default without a word. Variables far from every name
// (scripts' own, Kubernetes service links) are none of nexmux's business.
func misspeltEnv(app *cli.App, environ []string) []string {
	known := map[string]bool{}
	add := func(flags []cli.Flag) {
		for _, f := range flags {
			if e, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, v := range e.GetEnvVars() {
					known[v] = true
				}
			}
		}
	}
	add(app.Flags)
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			add(c.Flags)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
	// Compared without their common prefix: what is short or a swap is
	// the name after NEXMUX_.
	const prefix = "NEXMUX_"
	var names []string
	for k := range known {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			names = append(names, name)
		}
	}
	misspelling := config.Misspeller(names)
	services := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if svc, ok := strings.CutSuffix(name, "_SERVICE_HOST"); ok {
			services[svc] = true
		}
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "NEXMUX_") || known[name] || serviceLink(name, services) {
			continue
		}
		if best := misspelling(strings.TrimPrefix(name, prefix)); best != "" {
			out = append(out, fmt.Sprintf("ignoring %s: no setting reads it (did you mean %s?)", name, prefix+best))
		}
	}
	slices.Sort(out)
	return out
}

// serviceLink reports a variable Kubernetes sets for a Service whose
// <SVC>_SERVICE_HOST is in services: that, <SVC>_PORT, <SVC>_SERVICE_PORT[_NAME],
// <SVC>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]. A Service named nexmux-ha
// gives NEXMUX_HA_PORT, which is no misspelt NEXMUX_PORT.
func serviceLink(name string, services map[string]bool) bool {
	for i := 0; i < len(name); i++ {
		if name[i] != '_' || !services[name[:i]] {
			continue
		}
		rest := name[i+1:]
		if rest == "PORT" || rest == "SERVICE_HOST" || rest == "SERVICE_PORT" || strings.HasPrefix(rest, "SERVICE_PORT_") {
			return true
		}
		if port, ok := strings.CutPrefix(rest, "PORT_"); ok {
			digits, _, _ := strings.Cut(port, "_")
			if digits != "" && strings.Trim(digits, "0123456789") == "" {
				return true
			}
		}
	}
	return false
}
