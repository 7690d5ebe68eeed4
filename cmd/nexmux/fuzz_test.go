package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/nexmux/nexmux/internal/config"
)

// loadArgs is loadWith that returns the error instead of failing: what
// loadConfig gives for args, or the flag parser's refusal.
func loadArgs(args ...string) (*config.Config, error) {
	var (
		got     *config.Config
		loadErr error
	)
	// check takes every command's settings, so each file key has its flag.
	app := &cli.App{Flags: configFlags("check"), Writer: io.Discard, ErrWriter: io.Discard,
		Action: func(c *cli.Context) error {
			got, loadErr = loadConfig(c)
			return nil
		}}
	if err := app.Run(append([]string{"nexmux"}, args...)); err != nil {
		return nil, err
	}
	return got, loadErr
}

// flagArgs is the command line that says what the YAML file data says,
// or false when the flags cannot say it (not one mapping of setting names,
// a key twice, a list for a single value, an empty list).
func flagArgs(data []byte) ([]string, bool) {
	var doc *yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var next yaml.Node
		if err := dec.Decode(&next); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, false
		}
		n := &next
		if len(n.Content) == 0 || len(n.Content) == 1 && n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null" {
			continue
		}
		if doc != nil {
			return nil, false
		}
		doc = n
	}
	if doc == nil {
		return nil, true
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, false
	}
	kinds := map[string]any{}
	for _, s := range config.Settings() {
		kinds[s.Name] = s.Default()
	}
	deref := func(n *yaml.Node) *yaml.Node {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		return n
	}
	// An extension key holding no alias (none that could write out past
	// the bound or hold itself) says nothing a flag would.
	var aliasIn func(n *yaml.Node) bool
	aliasIn = func(n *yaml.Node) bool {
		if n.Kind == yaml.AliasNode {
			return true
		}
		for _, c := range n.Content {
			if aliasIn(c) {
				return true
			}
		}
		return false
	}
	var args []string
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		if k.Kind == yaml.ScalarNode && strings.HasPrefix(k.Value, "x-") && !seen[k.Value] && !aliasIn(root.Content[i+1]) {
			seen[k.Value] = true
			continue
		}
		def, known := kinds[k.Value]
		if k.Kind != yaml.ScalarNode || !known || seen[k.Value] {
			return nil, false
		}
		seen[k.Value] = true
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			// keeps the value before: no flag
		case v.Kind == yaml.ScalarNode:
			args = append(args, "--"+k.Value+"="+v.Value)
		case v.Kind == yaml.SequenceNode:
			if _, list := def.([]string); !list || len(v.Content) == 0 {
				return nil, false
			}
			for _, it := range v.Content {
				if it = deref(it); it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
					return nil, false
				}
				args = append(args, "--"+k.Value+"="+it.Value)
			}
		default:
			return nil, false
		}
	}
	return args, true
}

// FuzzConfigFile: whatever the config file holds, reading it neither
// panics nor hangs, and a file the command line could express gives what
// that command line gives: the same Config (partial ones included, as
// Build reports the rest) and an error exactly when the flags give one.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"listen: \"0.0.0.0:443\"\nupstream:\n  - http://nexus-1:8081/nexus\n  - http://nexus-2:8081/nexus\ncert: [/etc/nexmux/a.crt, /etc/nexmux/b.crt]\n",
		"route:\n  - a.example.com=team-a\n  - \"b.example.com=pull:team-b,push:team-b-hosted\"\n  - \"*.dev.example.com=dev\"\nport: [\"8082=team-a\", \"8083=pull:team-b,push:team-b-hosted\"]\n",
		"bind-ports: true\nproxy-protocol-from: [10.0.0.0/8, 192.168.1.5]\nhandshake-timeout: 10s\nheader-timeout: 1m30s\nmax-conns: 10000\nlog-level: debug\n",
		"chain: NEXMUX_B\njumps: false\nload: true\ndelete: true\nfamilies: iptables\n",
		"listen: &addr \"127.0.0.1:9443\"\nsocks5-listen: *addr\nroute:\n  - &a a.example.com=team-a\nport: [*a]\nmax-conns: &n 7\nmax-requests-per-client: *n\n",
		"---\nroute: [a.example.com=a]\n---\n# end\n",
		"route: [a.example.com=a]\n--- ~\n",
		"max-conns: 0.5\n", "max-conns: +5\n", "per-client-ipv6-prefix: -0\n", "drain-timeout: -0s\n",
		"port-tls-only: yes\n", "max-conns: 010\n", "handshake-timeout: 10\n",
		"strip-header: [X-A, ~]\n", "route:\n  a.example.com: team-a\n", "route: [[a.example.com=team-a]]\n",
		"listen: [::]:8443\n", "listen:\n\t- x\n", "default-route: |\n  a\n  b\n", "listen:\nupstream: []\n",
		"listen: :8443\nlisten: :9443\n", "config: other.yaml\n", "? [a]\n: b\n", "<<: {listen: x}\n",
		"x-note: {routes: [a], max-conns: many}\nroute: [a.example.com=a]\nx-list: [[1], ~]\n",
		"x-common: &c {max-conns: 7}\n<<: *c\nx-a: &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	// One directory per run of the target (-count, each fuzz worker), not
	// per input: a package-wide one was gone after the first run's cleanup.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// What loadSettings makes of the file alone, without the command
		// line's cost (urfave/cli looks every flag up by regexp).
		fromFile := config.Defaults()
		fileErr := fromFile.ApplyFile(file)
		if config.Unreadable(fileErr) {
			fromFile = nil
		}
		args, ok := flagArgs(data)
		if !ok {
			return
		}
		fromFlags, flagErr := loadArgs(args...)
		if (fileErr == nil) != (flagErr == nil) {
			t.Fatalf("file %q: error %v; flags %q: error %v", data, fileErr, args, flagErr)
		}
		if fromFile == nil || fromFlags == nil {
			if fromFile != fromFlags {
				t.Fatalf("file %q gives config %v (%v); flags %q give %v (%v)", data, fromFile != nil, fileErr, args, fromFlags != nil, flagErr)
			}
			return
		}
		fromFile.FileKeys, fromFile.FileLines, fromFile.FileValues = nil, nil, nil
		fromFlags.EnvWarnings = nil // the environment, not fuzzed: nil or empty
		if !reflect.DeepEqual(fromFile, fromFlags) {
			t.Fatalf("file %q gives\n%+v\nflags %q give\n%+v", data, fromFile, args, fromFlags)
		}
	})
}
