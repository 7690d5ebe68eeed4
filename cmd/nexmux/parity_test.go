package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/config"
)

// loadWith runs loadConfig over args and the current environment.
func loadWith(t *testing.T, args ...string) *config.Config {
	t.Helper()
	var got *config.Config
	app := &cli.App{Flags: routeFlags(), Action: func(c *cli.Context) error {
		var err error
		got, err = loadConfig(c)
		return err
	}}
	if err := app.Run(append([]string{"nexmux"}, args...)); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return got
}

// Every flag is also an environment variable NEXMUX_<FLAG> and a key of the
// config file, and all three set the same setting to the same value.
func TestEveryFlagIsAnEnvVarAndAFileKey(t *testing.T) {
	for _, f := range routeFlags() {
		name := f.Names()[0]
		if name == "config" {
			continue
		}
		var flagVal, yamlVal string
		switch f.(type) {
		case *cli.BoolFlag:
			flagVal, yamlVal = "true", "true"
		case *cli.DurationFlag:
			flagVal, yamlVal = "7s", "7s"
		case *cli.IntFlag:
			flagVal, yamlVal = "7", "7"
		case *cli.StringSliceFlag:
			flagVal, yamlVal = "seven", "[seven]"
		case *cli.StringFlag:
			flagVal, yamlVal = "seven", "seven"
		default:
			t.Fatalf("--%s: flag type %T not covered", name, f)
		}
		t.Run(name, func(t *testing.T) {
			fromFlag := loadWith(t, "--"+name+"="+flagVal)
			if reflect.DeepEqual(fromFlag, config.Defaults()) {
				t.Fatalf("--%s=%s changed nothing", name, flagVal)
			}
			t.Setenv(env(name)[0], flagVal)
			if fromEnv := loadWith(t); !reflect.DeepEqual(fromEnv, fromFlag) {
				t.Errorf("%s=%s gives\n%+v\n--%s gives\n%+v", env(name)[0], flagVal, fromEnv, name, fromFlag)
			}
			os.Unsetenv(env(name)[0])
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
}
