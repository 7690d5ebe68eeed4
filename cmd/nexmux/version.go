package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// revision and revisionTime are the VCS revision and its commit time given
// at link time (-ldflags '-X main.revision=... -X main.revisionTime=...'),
// for builds without the checkout's VCS info: deploy/Dockerfile copies the
// sources without .git.
var revision, revisionTime string

// versionText describes this binary from its build info: module version,
// VCS revision and time (when built from a checkout, or given at link
// time), and the Go version.
func versionText() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "nexmux (no build info)\n"
	}
	ver := bi.Main.Version
	if ver == "" {
		ver = "(devel)"
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = " (modified)"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "nexmux %s\n", ver)
	fmt.Fprintf(&b, "module:   %s\n", bi.Main.Path)
	switch {
	case rev != "":
		fmt.Fprintf(&b, "revision: %s%s\n", rev, dirty)
	case revision != "":
		fmt.Fprintf(&b, "revision: %s (given at build)\n", revision)
		if at == "" {
			at = revisionTime
		}
	default:
		b.WriteString("revision: unknown (built without VCS info)\n")
	}
	if at != "" {
		fmt.Fprintf(&b, "time:     %s\n", at)
	}
	fmt.Fprintf(&b, "go:       %s\n", bi.GoVersion)
	return b.String()
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:         "version",
		Usage:        "print the module version, VCS revision and time, and the Go version",
		OnUsageError: usageError,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				// As every other command: a word it does not take is
				// named, not passed over ("nexmux version extra").
				return cli.Exit(fmt.Sprintf("nexmux: unexpected argument %q: version takes none", c.Args().First()), exitInvalid)
			}
			return writeOutput(c, "version", "the version", versionText())
		},
	}
}

// examplesHelp ends the help of serve and check: three worked setups.
const examplesHelp = `
EXAMPLES:
   One name per team (pull from the group, push to the hosted repository):
     nexmux {{.Name}} --cert /tls/wild.pem --key /tls/wild.key \
       --upstream http://nexus:8081 \
       --route 'team-a.example.com=pull:team-a,push:team-a-hosted' \
       --route 'team-b.example.com=pull:team-b,push:team-b-hosted'

   Legacy connector ports (iptables redirects 8082/8083 to the listener):
     nexmux iptables --listen :8443 --port 8082=team-a --port 8083=team-a-hosted --load
     nexmux {{.Name}} --listen :8443 --cert /tls/nexus.pem --key /tls/nexus.key \
       --port 8082=team-a --port 8083=team-a-hosted

   HA (several Nexus nodes, same context path; reads spread over healthy nodes, each upload stays on its node):
     nexmux {{.Name}} --cert /tls/wild.pem --key /tls/wild.key \
       --upstream http://nexus-0:8081/nexus --upstream http://nexus-1:8081/nexus \
       --route 'docker.example.com=docker-group' --metrics-listen 127.0.0.1:9090
`

// withExamples is the command help template followed by the examples.
func withExamples() string { return cli.CommandHelpTemplate + examplesHelp }

// shortVersion is the module version for the help header.
func shortVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
