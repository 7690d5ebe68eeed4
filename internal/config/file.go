package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/nexmux/nexmux/internal/errlist"
)

// stringList is a repeatable flag in the config file: a list of the strings
// the flag takes on the command line, or one such string.
type stringList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*l = nil
			return nil
		}
		*l = stringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(stringList, 0, len(n.Content))
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

// ApplyFile overlays the settings of a YAML config file onto c: its keys are
// the long flag names. Unknown keys are errors: a misspelt key silently
// ignored is a route silently missing. Nothing is applied unless the whole
// file is valid, and every problem is reported.
func (c *Config) ApplyFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	var doc yaml.Node
	// An empty file (io.EOF) is an empty configuration.
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: line %d: want a mapping of long flag names to values", path, root.Line)
	}
	byName := make(map[string]*Setting, len(settings))
	for i := range settings {
		byName[settings[i].Name] = &settings[i]
	}
	var errs *multierror.Error
	seen := map[string]int{}
	var apply []func()
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		s := byName[k.Value]
		if s == nil || k.Kind != yaml.ScalarNode {
			errs = multierror.Append(errs, fmt.Errorf("config %s: line %d: field %s not found: keys are the long flag names", path, k.Line, k.Value))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			errs = multierror.Append(errs, fmt.Errorf("config %s: line %d: key %q already defined at line %d", path, k.Line, k.Value, line))
			continue
		}
		seen[k.Value] = k.Line
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			continue // an empty key keeps the earlier value
		}
		val, err := decode(s, v)
		var te *yaml.TypeError
		switch {
		case errors.As(err, &te):
			for _, m := range te.Errors {
				errs = multierror.Append(errs, fmt.Errorf("config %s: %s: %s", path, s.Name, m))
			}
			continue
		case err != nil:
			errs = multierror.Append(errs, fmt.Errorf("config %s: %s: %w", path, s.Name, err))
			continue
		}
		apply = append(apply, func() { s.Set(c, val) })
	}
	if err := errlist.Err(errs); err != nil {
		return err
	}
	for _, f := range apply {
		f()
	}
	return nil
}

// decode reads a YAML value of the setting's type.
func decode(s *Setting, n *yaml.Node) (any, error) {
	var err error
	switch s.def.(type) {
	case string:
		var v string
		err = n.Decode(&v)
		return v, err
	case []string:
		var v stringList
		err = n.Decode(&v)
		return []string(v), err
	}
	v, err := decodeTyped(s, n)
	if err != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		// A quoted value ("100", "true") is the text the flag takes.
		pv, perr := ParseText(s.def, n.Value)
		if perr != nil {
			return nil, fmt.Errorf("line %d: %q: %w", n.Line, n.Value, perr)
		}
		return pv, nil
	}
	return v, err
}

// decodeTyped reads a YAML int, duration or bool.
func decodeTyped(s *Setting, n *yaml.Node) (any, error) {
	switch s.def.(type) {
	case bool:
		var v bool
		err := n.Decode(&v)
		return v, err
	case time.Duration:
		var v time.Duration
		err := n.Decode(&v)
		return v, err
	case int:
		var v int
		err := n.Decode(&v)
		return v, err
	}
	panic(fmt.Sprintf("config: setting %s has a default of type %T", s.Name, s.def))
}

// ParseText reads text as the command line and the environment give it,
// into a value of def's type: an int, a time.Duration or a bool.
func ParseText(def any, text string) (any, error) {
	switch def.(type) {
	case int:
		n, err := strconv.ParseInt(text, 0, strconv.IntSize)
		if err != nil {
			return nil, errors.New("want a whole number")
		}
		return int(n), nil
	case time.Duration:
		d, err := time.ParseDuration(text)
		if err != nil {
			return nil, errors.New("want a duration such as 30s or 2m")
		}
		return d, nil
	case bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return nil, errors.New("want true or false")
		}
		return b, nil
	}
	panic(fmt.Sprintf("config: no text form for a %T", def))
}
