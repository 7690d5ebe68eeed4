package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/internal/config"
)

// loadWith runs loadConfig over args and the current environment.
func loadWith(t *testing.T, args ...string) *config.Config {
	t.Helper()
	var got *config.Config
	app := &cli.App{Flags: configFlags(), Action: func(c *cli.Context) error {
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
	for _, f := range configFlags() {
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
				flagVal, yamlVal = "true", "true"
			case time.Duration:
				flagVal, yamlVal = "7s", "7s"
			case int:
				flagVal, yamlVal = "7", "7"
			}
		case *cli.StringSliceFlag:
			flagVal, yamlVal = "seven", "[seven]"
			var d []string
			if f.Value != nil {
				d = f.Value.Value()
			}
			flagDefault = d
		case *cli.StringFlag:
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
			fromFile.File = ""
			if !reflect.DeepEqual(fromFile, fromFlag) {
				t.Errorf("file key %q gives\n%+v\n--%s gives\n%+v", strings.TrimSpace(name+": "+yamlVal), fromFile, name, fromFlag)
			}
		})
	}
	if len(flags) != len(config.Settings())+1 {
		t.Errorf("%d flags for %d settings and --config", len(flags), len(config.Settings()))
	}
}

// A repeatable setting whose values hold commas is glued back together when
// urfave/cli splits its environment variable or flag at every comma; other
// lists keep their pieces.
func TestCommaSplitValues(t *testing.T) {
	t.Setenv("NEXMUX_ROUTE", "a.example.com=pull:g,push:h,b.example.com=r")
	t.Setenv("NEXMUX_UPSTREAM", "http://nexus-1:8081,http://nexus-2:8081")
	c := loadWith(t, "--port", "8082=pull:g,push:h,8083=r")
	for _, tc := range []struct {
		name      string
		got, want []string
	}{
		{"route", c.Route, []string{"a.example.com=pull:g,push:h", "b.example.com=r"}},
		{"port", c.Port, []string{"8082=pull:g,push:h", "8083=r"}},
		{"upstream", c.Upstream, []string{"http://nexus-1:8081", "http://nexus-2:8081"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
