// Command nexmux fronts Nexus Repository's Docker repositories with one
// listener. This file only turns flags, environment variables and the config
// file into a config.Config; the packages do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/nexmux/nexmux/config"
	"github.com/nexmux/nexmux/daemon"
	"github.com/nexmux/nexmux/discover"
	"github.com/nexmux/nexmux/internal/memtrim"
	"github.com/nexmux/nexmux/iptables"
	"github.com/nexmux/nexmux/route"
)

// exitInvalid is the status for invalid flags or configuration.
const exitInvalid = 2

func env(name string) []string {
	return []string{"NEXMUX_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

// routeFlags are shared by every command that reads a configuration.
func routeFlags() []cli.Flag {
	d := config.Defaults()
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "YAML file whose keys are these long flag names (precedence: flag > env > file)", EnvVars: env("config")},
		&cli.StringFlag{Name: "listen", Value: d.Listen, Usage: "fan-in listener `ADDR`", EnvVars: env("listen")},
		&cli.StringSliceFlag{Name: "upstream", Value: cli.NewStringSlice(d.Upstream...), Usage: "Nexus base `URL`, context path allowed (http://nexus:8081/nexus)", EnvVars: env("upstream")},
		&cli.StringSliceFlag{Name: "cert", Usage: "certificate `FILE` (PEM, chain allowed); repeatable, paired with --key by position", EnvVars: env("cert")},
		&cli.StringSliceFlag{Name: "key", Usage: "private key `FILE` for the --cert at the same position", EnvVars: env("key")},
		&cli.StringSliceFlag{Name: "route", Usage: "`HOST=REPO` or HOST=pull:GROUP,push:HOSTED; HOST exact or *.domain; repeatable", EnvVars: env("route")},
		&cli.StringSliceFlag{Name: "port", Usage: "`PORT=REPO` legacy connector port route (iptables REDIRECT or --bind-ports); repeatable", EnvVars: env("port")},
		&cli.StringFlag{Name: "default-route", Usage: "`REPO` for clients that send no server name (IP literals)", EnvVars: env("default-route")},
		&cli.StringSliceFlag{Name: "passthrough", Usage: "`HOST=ADDR` copy TLS for HOST raw to ADDR without terminating it; repeatable", EnvVars: env("passthrough")},
		&cli.StringSliceFlag{Name: "proxy-protocol-from", Usage: "`CIDR` of load balancers that MUST send a PROXY v1/v2 header; everyone else must not; repeatable", EnvVars: env("proxy-protocol-from")},
		&cli.StringFlag{Name: "passthrough-proxy-protocol", Usage: "send a PROXY header (`v1|v2`; v2 carries the SNI as AUTHORITY TLV) to passthrough backends", EnvVars: env("passthrough-proxy-protocol")},
		&cli.StringFlag{Name: "socks5-listen", Usage: "`ADDR` for a SOCKS5 ingress that maps CONNECT host:port onto the routes (and nothing else)", EnvVars: env("socks5-listen")},
		&cli.StringFlag{Name: "socks5-auth-file", Usage: "`FILE` of user:password lines required by the SOCKS5 ingress", EnvVars: env("socks5-auth-file")},
		&cli.StringFlag{Name: "plain-http-scheme", Usage: "`SCHEME` clients use for plain-HTTP port routes: http, or https behind a TLS-ending load balancer (default http)", EnvVars: env("plain-http-scheme")},
		&cli.BoolFlag{Name: "bind-ports", Usage: "bind each --port itself (where iptables is not allowed)", EnvVars: env("bind-ports")},
		&cli.StringFlag{Name: "metrics-listen", Usage: "`ADDR` for /metrics, /healthz, /readyz", EnvVars: env("metrics-listen")},
		&cli.DurationFlag{Name: "handshake-timeout", Usage: "deadline for the routing phase (PROXY header + ClientHello) (default 10s)", EnvVars: env("handshake-timeout")},
		&cli.DurationFlag{Name: "header-timeout", Usage: "deadline for the TLS handshake and each request's headers; never a body timeout (default 30s)", EnvVars: env("header-timeout")},
		&cli.DurationFlag{Name: "idle-timeout", Usage: "close idle client keep-alive connections after this (default 2m)", EnvVars: env("idle-timeout")},
		&cli.DurationFlag{Name: "drain-timeout", Usage: "on SIGTERM, wait this long for in-flight transfers (default 30s)", EnvVars: env("drain-timeout")},
		&cli.IntFlag{Name: "max-conns", Usage: "refuse connections beyond this many (0: no limit)", EnvVars: env("max-conns")},
		&cli.StringFlag{Name: "log-format", Value: d.LogFormat, Usage: "text or json", EnvVars: env("log-format")},
		&cli.StringFlag{Name: "log-level", Value: d.LogLevel, Usage: "debug, info, warn or error", EnvVars: env("log-level")},
		&cli.BoolFlag{Name: "no-memory-trim", Usage: "keep freed memory instead of returning it to the OS once traffic goes quiet (a forced GC then; see README Memory)", EnvVars: env("no-memory-trim")},
	}
}

// loadConfig builds the configuration: defaults, then the file, then every
// flag set on the command line or in the environment.
func loadConfig(c *cli.Context) (*config.Config, error) {
	cfg := config.Defaults()
	if f := c.String("config"); f != "" {
		if err := cfg.ApplyFile(f); err != nil {
			return nil, err
		}
		cfg.File = f
	}
	str := func(dst *string, name string) {
		if c.IsSet(name) {
			*dst = c.String(name)
		}
	}
	list := func(dst *[]string, name string) {
		if c.IsSet(name) {
			*dst = c.StringSlice(name)
		}
	}
	str(&cfg.Listen, "listen")
	list(&cfg.Upstream, "upstream")
	list(&cfg.Cert, "cert")
	list(&cfg.Key, "key")
	list(&cfg.Route, "route")
	list(&cfg.Port, "port")
	str(&cfg.DefaultRoute, "default-route")
	list(&cfg.Passthrough, "passthrough")
	list(&cfg.ProxyProtocolFrom, "proxy-protocol-from")
	str(&cfg.PassthroughProxyProtocol, "passthrough-proxy-protocol")
	str(&cfg.Socks5Listen, "socks5-listen")
	str(&cfg.Socks5AuthFile, "socks5-auth-file")
	str(&cfg.PlainHTTPScheme, "plain-http-scheme")
	if c.IsSet("bind-ports") {
		cfg.BindPorts = c.Bool("bind-ports")
	}
	str(&cfg.MetricsListen, "metrics-listen")
	for name, dst := range map[string]*time.Duration{
		"handshake-timeout": &cfg.HandshakeTimeout, "header-timeout": &cfg.HeaderTimeout,
		"idle-timeout": &cfg.IdleTimeout, "drain-timeout": &cfg.DrainTimeout,
	} {
		if c.IsSet(name) {
			*dst = c.Duration(name)
		}
	}
	if c.IsSet("max-conns") {
		cfg.MaxConns = c.Int("max-conns")
	}
	str(&cfg.LogFormat, "log-format")
	str(&cfg.LogLevel, "log-level")
	if c.IsSet("no-memory-trim") {
		cfg.NoMemoryTrim = c.Bool("no-memory-trim")
	}
	return cfg, nil
}

func build(c *cli.Context) (*config.Built, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	return cfg.Build()
}

// invalid reports a configuration error: every problem, one per line.
func invalid(err error) error {
	return cli.Exit("nexmux: invalid configuration:\n"+indent(err.Error()), exitInvalid)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ")
}

// usageError makes a usage error (unknown flag, unparsable value) exit like
// an invalid configuration: status 2, nothing started.
func usageError(_ *cli.Context, err error, _ bool) error { return invalid(err) }

func newApp() *cli.App {
	return &cli.App{
		Name:         "nexmux",
		Usage:        "one TLS listener in front of every Docker repository of a Nexus Repository 3",
		OnUsageError: usageError,
		Commands: []*cli.Command{
			{
				Name:         "serve",
				Usage:        "serve the routes",
				Flags:        routeFlags(),
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					// First, while the heap has freed nothing (see
					// memtrim.HeapFloor): a later block would reuse pages
					// the configuration left behind, and be resident.
					floor, _ := memtrim.NewHeapFloor(memtrim.FloorSize(os.Getenv))
					defer floor.Release() // also what keeps it held while serving
					b, err := build(c)
					if err != nil {
						return invalid(err)
					}
					lw := daemon.NewLogWriter(os.Stderr, daemon.AccessLogDelay)
					defer lw.Close()
					log, access := daemon.NewLoggers(lw, b.Config.LogFormat, b.Config.LogLevel)
					d, err := daemon.New(b, daemon.Options{Logger: log, AccessLog: access, Reload: func() (*config.Built, error) { return build(c) }})
					if err != nil {
						return cli.Exit("nexmux: "+err.Error(), 1)
					}
					if err := d.Run(context.Background()); err != nil {
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
				Flags: append(routeFlags(),
					&cli.BoolFlag{Name: "delete", Usage: "print the rules that remove exactly what the apply rules add"},
					&cli.BoolFlag{Name: "jumps", Value: true, Usage: "include the PREROUTING/OUTPUT jumps (off when re-applying over existing jumps)"},
					&cli.StringFlag{Name: "chain", Value: iptables.DefaultChain, Usage: "nat `CHAIN` holding the rules (one per nexmux instance)"},
					&cli.BoolFlag{Name: "load", Usage: "load the rules with <family>-restore --noflush instead of printing them; idempotent, adds only missing jumps"},
					&cli.StringSliceFlag{Name: "families", Value: cli.NewStringSlice(iptables.Families...), Usage: "`FAMILY` list --load drives (iptables, ip6tables)", EnvVars: env("families")},
				),
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					cfg, err := loadConfig(c)
					if err != nil {
						return invalid(err)
					}
					r := iptables.Rules{Chain: c.String("chain"), Jumps: c.Bool("jumps")}
					var out string
					if c.Bool("delete") {
						out, err = r.Delete()
					} else {
						var t *route.Table
						if r.ListenPort, t, err = cfg.PortRoutes(); err == nil {
							r.Ports = t.Ports()
							out, err = r.Apply()
						}
					}
					fams, ferr := iptables.ParseFamilies(c.StringSlice("families"))
					if err = errors.Join(err, ferr); err != nil {
						return invalid(err)
					}
					if !c.Bool("load") {
						fmt.Fprint(c.App.Writer, out)
						return nil
					}
					if c.Bool("delete") {
						err = r.Uninstall(fams, c.App.ErrWriter)
					} else {
						err = r.Install(fams, c.App.ErrWriter)
					}
					if err != nil {
						return cli.Exit("nexmux iptables: "+err.Error(), 1)
					}
					return nil
				},
			},
			{
				Name:  "discover",
				Usage: "read Nexus's docker repositories over its REST API and print a ready-to-use mapping",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "nexus", Usage: "Nexus base `URL` (http://nexus:8081[/ctx])", Required: true, EnvVars: env("nexus")},
					&cli.StringFlag{Name: "user", Usage: "Nexus user allowed to read repository settings", Required: true, EnvVars: env("user")},
					&cli.StringFlag{Name: "password-file", Usage: "`FILE` holding the password (never a flag: it would show in ps)", Required: true, EnvVars: env("password-file")},
					&cli.StringFlag{Name: "domain", Usage: "give every repository the name <repo>.`DOMAIN`", EnvVars: env("domain")},
					&cli.StringFlag{Name: "format", Value: "flags", Usage: "flags or yaml", EnvVars: env("format")},
				},
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					format := c.String("format")
					if format != "flags" && format != "yaml" {
						return invalid(fmt.Errorf("format %q: want flags or yaml", format))
					}
					pw, err := os.ReadFile(c.String("password-file"))
					if err != nil {
						return invalid(fmt.Errorf("password-file: %v", err))
					}
					repos, err := discover.Fetch(c.Context, nil, c.String("nexus"), c.String("user"), strings.TrimRight(string(pw), "\r\n"))
					if err != nil {
						return cli.Exit("nexmux discover: "+err.Error(), 1)
					}
					plan, err := discover.MakePlan(repos, c.String("domain"))
					if err != nil {
						return cli.Exit("nexmux discover: "+err.Error(), 1)
					}
					if format == "yaml" {
						fmt.Fprint(c.App.Writer, plan.YAML())
					} else {
						fmt.Fprint(c.App.Writer, plan.Flags())
					}
					return nil
				},
			},
			{
				Name:         "check",
				Usage:        "validate the configuration and print the route table",
				Flags:        routeFlags(),
				OnUsageError: usageError,
				Action: func(c *cli.Context) error {
					b, err := build(c)
					if err != nil {
						return invalid(err)
					}
					fmt.Fprint(c.App.Writer, b.Describe())
					return nil
				},
			},
		},
	}
}

func main() {
	if err := newApp().Run(os.Args); err != nil {
		var ec cli.ExitCoder
		if !errors.As(err, &ec) {
			fmt.Fprintln(os.Stderr, "nexmux:", err)
			os.Exit(1)
		}
	}
}
