package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults are the values of settings nobody gave.
func Defaults() *Config {
	return &Config{
		Listen:    ":8443",
		Upstream:  []string{"http://127.0.0.1:8081"},
		LogFormat: "text",
		LogLevel:  "info",
	}
}

// StringList is a repeatable flag in the config file: a list of the strings
// the flag takes on the command line, or one such string.
type StringList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*l = nil
			return nil
		}
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(StringList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a string", c.Line)
			}
			out = append(out, c.Value)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
}

// fileConfig is the YAML shape: the keys are the long flag names.
type fileConfig struct {
	Listen                   *string        `yaml:"listen"`
	Upstream                 *StringList    `yaml:"upstream"`
	Cert                     *StringList    `yaml:"cert"`
	Key                      *StringList    `yaml:"key"`
	Route                    *StringList    `yaml:"route"`
	Port                     *StringList    `yaml:"port"`
	DefaultRoute             *string        `yaml:"default-route"`
	Passthrough              *StringList    `yaml:"passthrough"`
	BindPorts                *bool          `yaml:"bind-ports"`
	MetricsListen            *string        `yaml:"metrics-listen"`
	ProxyProtocolFrom        *StringList    `yaml:"proxy-protocol-from"`
	PassthroughProxyProtocol *string        `yaml:"passthrough-proxy-protocol"`
	Socks5Listen             *string        `yaml:"socks5-listen"`
	Socks5AuthFile           *string        `yaml:"socks5-auth-file"`
	PlainHTTPScheme          *string        `yaml:"plain-http-scheme"`
	HandshakeTimeout         *time.Duration `yaml:"handshake-timeout"`
	HeaderTimeout            *time.Duration `yaml:"header-timeout"`
	IdleTimeout              *time.Duration `yaml:"idle-timeout"`
	DrainTimeout             *time.Duration `yaml:"drain-timeout"`
	MaxConns                 *int           `yaml:"max-conns"`
	LogFormat                *string        `yaml:"log-format"`
	LogLevel                 *string        `yaml:"log-level"`
	NoMemoryTrim             *bool          `yaml:"no-memory-trim"`
}

// ApplyFile overlays the settings of a YAML config file onto c. Unknown keys
// are errors: a misspelt key silently ignored is a route silently missing.
func (c *Config) ApplyFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	var f fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file (io.EOF) is an empty configuration.
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	set(&c.Listen, f.Listen)
	setList(&c.Upstream, f.Upstream)
	setList(&c.Cert, f.Cert)
	setList(&c.Key, f.Key)
	setList(&c.Route, f.Route)
	setList(&c.Port, f.Port)
	set(&c.DefaultRoute, f.DefaultRoute)
	setList(&c.Passthrough, f.Passthrough)
	set(&c.BindPorts, f.BindPorts)
	set(&c.MetricsListen, f.MetricsListen)
	setList(&c.ProxyProtocolFrom, f.ProxyProtocolFrom)
	set(&c.PassthroughProxyProtocol, f.PassthroughProxyProtocol)
	set(&c.Socks5Listen, f.Socks5Listen)
	set(&c.Socks5AuthFile, f.Socks5AuthFile)
	set(&c.PlainHTTPScheme, f.PlainHTTPScheme)
	set(&c.HandshakeTimeout, f.HandshakeTimeout)
	set(&c.HeaderTimeout, f.HeaderTimeout)
	set(&c.IdleTimeout, f.IdleTimeout)
	set(&c.DrainTimeout, f.DrainTimeout)
	set(&c.MaxConns, f.MaxConns)
	set(&c.LogFormat, f.LogFormat)
	set(&c.LogLevel, f.LogLevel)
	set(&c.NoMemoryTrim, f.NoMemoryTrim)
	return nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func setList(dst *[]string, v *StringList) {
	if v != nil {
		*dst = []string(*v)
	}
}
