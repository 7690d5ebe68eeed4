package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-multierror"
	"gopkg.in/yaml.v3"

	"github.com/nexmux/nexmux/internal/errlist"
	"github.com/nexmux/nexmux/internal/smallfile"
)

// unquotedIPv6 is a value that starts with a bracketed IPv6 address and
// goes on after it ([::]:8443): YAML reads the brackets as a list.
var unquotedIPv6 = regexp.MustCompile(`^\s*(?:-\s+|[\w-]+:\s+(?:-\s+)?)\[[0-9A-Fa-f:.%]*\][^\s,\]]`)

// unquotedWildcard is a value that starts with "*." (*.dev.example.com=dev),
// in a block or a flow list: YAML reads the '*' as an alias, and yaml.v3's
// error ("did not find expected alphabetic or numeric character") says
// nothing of quotes.
var unquotedWildcard = regexp.MustCompile(`(?:^\s*(?:-\s+|[\w-]+:\s+(?:-\s+)?)|[\[,]\s*)\*\.`)

// flowList is a value that is a flow list ([a, b]); quotedText is a
// quoted YAML string in it.
var (
	flowList   = regexp.MustCompile(`^\s*(?:-\s+|[\w-]+:\s+(?:-\s+)?)\[`)
	quotedText = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'`)
	colonItem  = regexp.MustCompile(`,\s*:`)
	// bracketedIPv6 is an IPv6 address in brackets ([::1], [fe80::1%eth0]),
	// not any '[' (a nested list).
	bracketedIPv6 = regexp.MustCompile(`\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%[\w.-]+)?\]`)
)

// flowIPv6 reports a flow list with an unquoted item holding an IPv6
// address: one starting with "::" (::1/128) or with a bracketed address
// inside (http://[::1]:8081), neither of which YAML reads as a string.
func flowIPv6(line string) bool {
	m := flowList.FindStringIndex(line)
	if m == nil {
		return false
	}
	rest := quotedText.ReplaceAllString(line[m[1]:], `""`)
	return bracketedIPv6.MatchString(rest) || colonItem.MatchString(","+rest)
}

// tabIndent is a line indented with a tab, which YAML refuses ("found
// character that cannot start any token").
var tabIndent = regexp.MustCompile(`^ *\t`)

// yamlHint names the first line whose value is an unquoted bracketed
// address, IPv6 address in a flow list or wildcard, or that is indented
// with a tab, which YAML's own error does not point at.
func yamlHint(data []byte) string {
	for i, line := range strings.Split(string(data), "\n") {
		if tabIndent.MatchString(line) {
			return fmt.Sprintf(" (line %d: indent with spaces: YAML refuses tabs there)", i+1)
		}
		if unquotedIPv6.MatchString(line) {
			return fmt.Sprintf(" (line %d: quote a value that starts with an IPv6 address in brackets, as in listen: \"[::]:8443\")", i+1)
		}
		if flowIPv6(line) {
			return fmt.Sprintf(" (line %d: quote each item of a list that holds an IPv6 address, as in proxy-protocol-from: [\"::1/128\"], upstream: [\"http://[::1]:8081\"])", i+1)
		}
		if unquotedWildcard.MatchString(line) {
			return fmt.Sprintf(" (line %d: quote a value that starts with '*', as in route: \"*.dev.example.com=dev\": unquoted, YAML reads it as an alias)", i+1)
		}
	}
	return ""
}

// controlHint names the line and code of the first character YAML does
// not allow in a file (a NUL of a binary or corrupted file), which
// yaml.v3's "control characters are not allowed" does not.
func controlHint(data []byte) string {
	line := 1
	for i, r := range string(data) {
		switch {
		case r == '\n':
			line++
		case r == '\t' || r == '\r' || 0x20 <= r && r <= 0x7e || r == 0x85 || 0xa0 <= r && r <= 0xd7ff ||
			0xe000 <= r && r <= 0xfffd && (r != 0xfeff || i == 0) || 0x10000 <= r && r <= 0x10ffff:
		case r < 0x80:
			return fmt.Sprintf(" (line %d: byte 0x%02x, a control character: is the file binary or corrupted?)", line, r)
		default:
			return fmt.Sprintf(" (line %d: character %U, a control character)", line, r)
		}
	}
	return ""
}

// scalarText is a YAML scalar's text as written (a quoted one without its
// quotes): the text the flag would be given. Whatever YAML would make of
// it (0.5 as a float, 010 as octal, yes as true) does not matter: the
// flag's own parser reads it, so the file and the command line agree.
func scalarText(n *yaml.Node) (string, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("line %d: want a single value, as the flag takes", n.Line)
	}
	if err := LongValue(n.Value); err != nil {
		return "", fmt.Errorf("line %d: %w", n.Line, err)
	}
	return n.Value, nil
}

// MaxValue is the longest value a setting takes, a path or URL of the
// longest the system allows with room to spare: a longer one is a
// mistake (a file pasted in, a runaway template).
const MaxValue = 8 << 10

// LongValue is the problem of a value longer than MaxValue, which names
// its length and first bytes: echoed whole by every later problem, it
// would make one line of megabytes.
func LongValue(text string) error {
	if len(text) <= MaxValue {
		return nil
	}
	return fmt.Errorf("a value of %d bytes (%.20q...): longer than any setting takes (%d KiB at most)", len(text), text, MaxValue>>10)
}

// resolve returns the node a YAML alias (*name) stands for: the value its
// anchor (&name) names, so a file is read as if written out (yaml.v3 refuses
// an alias to an undefined anchor while decoding; an anchor cannot be set on
// an alias, so the loop ends).
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// entry is a key of the file's mapping and its value, as ApplyFile reads
// them: written out, or merged in by a YAML merge key (<<).
type entry struct {
	k, v *yaml.Node
	// dup is the line where the key was first given in its mapping, when
	// given again there (0 if not).
	dup int
	// err is a merge that cannot be read (k and v nil).
	err error
}

// isMerge reports whether k is a YAML merge key, as yaml.v3's decoder
// tells one: a plain or !!merge-tagged <<, not a quoted "<<".
func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

// keyNode is key k as written out: an alias key is the key it names, at
// the alias's line.
func keyNode(k *yaml.Node) *yaml.Node {
	if r := resolve(k); r != k {
		key := *r
		key.Line = k.Line
		return &key
	}
	return k
}

// merger reads a mapping with its merges (<<: *base, <<: [*a, *b]) as
// yaml.v3's decoder does (decode.go, merge): a key written out in a
// mapping wins over the merged ones wherever << stands, an earlier map of
// a list of merges over a later one, and a merged map's own keys over its
// own merges. A merged key's value is taken whole (a list replaces, is
// not appended to). Merged entries stand where their << does, so that a
// file reads as the file with the merges written out in their place.
type merger struct {
	taken map[string]bool      // keys given by an outer mapping or earlier merge
	state map[*yaml.Node]uint8 // mappings merged: mergeReading, mergeDone
	out   []entry
	depth int // mappings being read, each within a merge of the one before
}

// maxMergeDepth bounds merges of merges (a map merging one that merges
// another...), which are read by recursion: a file of a long chain of
// them would otherwise overflow the stack, a fatal error no caller can
// recover from, a SIGHUP reload's included.
const maxMergeDepth = 1000

const (
	mergeReading uint8 = iota + 1
	mergeDone
)

// entries are the keys of root and of its merges, in file order.
func entries(root *yaml.Node) []entry {
	m := merger{taken: map[string]bool{}, state: map[*yaml.Node]uint8{}}
	m.mapping(root)
	return m.out
}

func (m *merger) mapping(n *yaml.Node) {
	m.state[n] = mergeReading
	m.depth++
	defer func() { m.depth-- }()
	type item struct {
		entry
		merge, shadowed bool
	}
	items := make([]item, 0, len(n.Content)/2)
	first := map[string]int{}
	mergeAt := 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		it := item{entry: entry{k: keyNode(k), v: v}, merge: isMerge(k)}
		switch k := it.k; {
		case it.merge:
			if mergeAt != 0 {
				it.dup = mergeAt
			} else {
				mergeAt = k.Line
			}
		case k.Kind == yaml.ScalarNode:
			if line, dup := first[k.Value]; dup {
				it.dup = line
			} else {
				first[k.Value] = k.Line
			}
			// Keys an outer mapping or earlier merge gave are left out
			// (a key given twice here is an error all the same, as
			// yaml.v3 says "already defined" of any mapping).
			it.shadowed = it.dup == 0 && m.taken[k.Value]
		}
		items = append(items, it)
	}
	for name := range first {
		m.taken[name] = true
	}
	for _, it := range items {
		switch {
		case it.shadowed:
		case it.merge && it.dup != 0:
			m.out = append(m.out, entry{err: fmt.Errorf("line %d: a second merge key (<<) in one mapping (the first is at line %d): merge a list, as in <<: [*a, *b]", it.k.Line, it.dup)})
		case it.merge:
			m.merge(it.v)
		default:
			m.out = append(m.out, it.entry)
		}
	}
	m.state[n] = mergeDone
}

// merge reads the value of a merge key: a mapping, or a list of them, or
// an alias of one; yaml.v3 refuses anything else (an alias of a list
// included), and so does nexmux, naming the line.
func (m *merger) merge(v *yaml.Node) {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	for i, it := range items {
		r := resolve(it)
		if r.Kind != yaml.MappingNode {
			what := "a single value"
			switch {
			case r.Kind == yaml.SequenceNode:
				what = "a list"
			case r.Tag == "!!null":
				what = "an empty value (YAML null)"
			}
			if it.Kind == yaml.AliasNode {
				what = "*" + it.Value + ", " + what
			}
			err := fmt.Errorf("line %d: a merge (<<) takes a mapping or a list of mappings, as in <<: *base or <<: [*a, *b], not %s", it.Line, what)
			if it != v {
				err = fmt.Errorf("line %d: a merge (<<) list takes mappings only, as in <<: [*a, *b]: its item %d is %s", it.Line, i+1, what)
			}
			m.out = append(m.out, entry{err: err})
			continue
		}
		switch m.state[r] {
		case mergeReading:
			m.out = append(m.out, entry{err: fmt.Errorf("line %d: *%s merges a mapping into itself", it.Line, it.Value)})
		case mergeDone:
			// Merged already: each of its keys is taken, so it adds
			// nothing, and it is not read again (nor its problems
			// named twice, nor a file of merges of merges read in
			// exponential time).
		default:
			if m.depth > maxMergeDepth {
				what := "a mapping"
				if it.Kind == yaml.AliasNode {
					what = "*" + it.Value
				}
				m.out = append(m.out, entry{err: fmt.Errorf("line %d: %s is merged %d merges deep, more than the %d nexmux reads: merge fewer maps of maps", it.Line, what, m.depth, maxMergeDepth)})
				continue
			}
			m.mapping(r)
		}
	}
}

// listText is a repeatable flag in the config file: a list of the strings
// the flag takes on the command line, one flag value each, or one such
// string.
func listText(n *yaml.Node) ([]string, error) {
	n = resolve(n)
	switch n.Kind {
	case yaml.ScalarNode:
		if err := LongValue(n.Value); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		// Every bad item is named (errors.Join), not only the first.
		out := make([]string, 0, len(n.Content))
		var bad []error
		for _, c := range n.Content {
			if c = resolve(c); c.Kind != yaml.ScalarNode {
				bad = append(bad, fmt.Errorf("line %d: want a string", c.Line))
				continue
			}
			// `~`, `null` or a bare `-` is YAML's null, not its own
			// text: quote it if that text is meant.
			if c.Tag == "!!null" {
				bad = append(bad, fmt.Errorf("line %d: an empty item (YAML null) in the list: remove it, or quote it if the text is meant", c.Line))
				continue
			}
			if err := LongValue(c.Value); err != nil {
				bad = append(bad, fmt.Errorf("line %d: %w", c.Line, err))
				continue
			}
			out = append(out, c.Value)
		}
		if len(bad) > 0 {
			return nil, errors.Join(bad...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("line %d: want a string or a list of strings", n.Line)
}

// unreadableError marks an ApplyFile error that left nothing of the file
// applied: it could not be read, or is not one YAML mapping.
type unreadableError struct{ error }

func (e unreadableError) Unwrap() error { return e.error }

// Unreadable reports whether err (from ApplyFile) left nothing of the file
// applied, so that validating the rest would only report what the file
// was meant to give.
func Unreadable(err error) bool {
	var u unreadableError
	return errors.As(err, &u)
}

// NoFileNamed is the problem of a --config given empty (`--config "$CONF"`
// with CONF unset): unreadable, since the file meant is not read. env and
// path are the variable (NEXMUX_CONFIG) and the file it names, when the
// flag is given over one: leaving the flag out reads that file, not none.
func NoFileNamed(env, path string) error {
	if env != "" {
		return unreadableError{fmt.Errorf(`config "": --config names no file (an unset variable?) over %s's %s: leave it out to read that file`, env, path)}
	}
	return unreadableError{errors.New(`config "": --config names no file (leave it out to read none)`)}
}

// emptyDocument reports whether a YAML document holds nothing: no node, or
// a null scalar.
func emptyDocument(d *yaml.Node) bool {
	if d.Kind == yaml.DocumentNode {
		if len(d.Content) == 0 {
			return true
		}
		if len(d.Content) == 1 {
			d = d.Content[0]
		}
	}
	return d.Kind == yaml.ScalarNode && d.Tag == "!!null"
}

// ApplyFile overlays the settings of a YAML config file onto c: its keys are
// the long flag names. Unknown keys are errors: a misspelt key silently
// ignored is a route silently missing. Every problem is reported. When the
// file is a mapping but some keys are invalid, the valid ones are applied
// (so validation can report the rest too) and the error says what was
// wrong; a caller must not serve such a config. When the file cannot be
// read at all, Unreadable reports it.
func (c *Config) ApplyFile(path string) error {
	data, err := smallfile.Read(path)
	if err != nil {
		return unreadableError{fmt.Errorf("config %s: %w", path, err)}
	}
	// Documents that hold nothing ("---" marks a template left before or
	// after, comments, an explicit null) are skipped. A second one that
	// holds something would be ignored by a decoder that reads one: its
	// routes silently missing.
	var doc *yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if doc != nil {
				return unreadableError{fmt.Errorf("config %s: a second YAML document (after ---): put every setting in one: %w", path, err)}
			}
			hint := yamlHint(data)
			if strings.Contains(err.Error(), "control characters are not allowed") {
				hint = controlHint(data)
			}
			return unreadableError{fmt.Errorf("config %s: %w%s", path, err, hint)}
		}
		if emptyDocument(&next) {
			continue
		}
		if doc != nil {
			return unreadableError{fmt.Errorf("config %s: line %d: a second YAML document (after ---): put every setting in one", path, next.Line)}
		}
		doc = &next
	}
	if doc == nil {
		return nil // an empty file is an empty configuration
	}
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return unreadableError{fmt.Errorf("config %s: line %d: want a mapping of long flag names to values", path, root.Line)}
	}
	keys := entries(root)
	// Aliases are read as the value written out: a few bytes of them can
	// stand for more than any file nexmux reads (billion laughs).
	n, err := writtenOut(keys)
	if err != nil {
		return unreadableError{fmt.Errorf("config %s: %w", path, err)}
	}
	if n > smallfile.Max {
		return unreadableError{fmt.Errorf("config %s: its aliases write out %d MiB of values, more than the %d MiB nexmux reads in a file: write the values out, or alias fewer", path, n>>20, smallfile.Max>>20)}
	}
	byName := make(map[string]*Setting, len(settings))
	names := make([]string, len(settings))
	for i := range settings {
		byName[settings[i].Name] = &settings[i]
		names[i] = settings[i].Name
	}
	misspelling := RefusedMisspeller(names)
	var errs *multierror.Error
	// A key given twice is named once, whether found in a mapping merged
	// into the file's or in the extension key's value holding that mapping.
	twice := map[keyAt]bool{}
	reportTwice := func(err error, k *yaml.Node) {
		if at := (keyAt{k.Line, k.Value}); !twice[at] {
			twice[at] = true
			errs = multierror.Append(errs, err)
		}
	}
	walked := map[*yaml.Node]bool{}
	for _, e := range keys {
		if e.err != nil {
			// Not a SettingError: the merge may have held any setting,
			// the iptables chain included.
			errs = multierror.Append(errs, fmt.Errorf("config %s: %w", path, e.err))
			continue
		}
		k, v := e.k, e.v
		if k.Kind == yaml.ScalarNode && IsExtension(k.Value) {
			// A place for anchors (x-base: &base {...}): not read, but
			// given once, as every key of every mapping in it (yaml.v3
			// refuses a key twice in any mapping).
			if e.dup != 0 {
				reportTwice(definedTwice(path, k.Value, k, e.dup), k)
			}
			for _, d := range duplicateKeys(v, walked) {
				reportTwice(definedTwice(path, k.Value, d.k, d.first), d.k)
			}
			continue
		}
		s := byName[k.Value]
		if k.Kind == yaml.ScalarNode && k.Value == "config" {
			errs = multierror.Append(errs, &SettingError{Setting: "config", Err: fmt.Errorf("config %s: line %d: a config file cannot name another one (config is a flag and an environment variable only)", path, k.Line)})
			continue
		}
		if k.Kind != yaml.ScalarNode {
			// A list or mapping has no Value to name in "field ... not found".
			errs = multierror.Append(errs, &UnknownKeyError{Err: fmt.Errorf("config %s: line %d: a key must be a long flag name, not a list or mapping", path, k.Line)})
			continue
		}
		if s == nil {
			hint := ""
			if like := misspelling(k.Value); like != "" {
				hint = " (did you mean " + like + "?)"
			}
			errs = multierror.Append(errs, &UnknownKeyError{Key: k.Value, Err: fmt.Errorf("config %s: line %d: field %s not found: keys are the long flag names%s", path, k.Line, k.Value, hint)})
			continue
		}
		if e.dup != 0 {
			reportTwice(definedTwice(path, k.Value, k, e.dup), k)
			continue
		}
		if v := resolve(v); v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			continue // an empty key keeps the earlier value
		}
		val, err := decode(s, v)
		if err != nil {
			bad := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok { // a list's items
				bad = j.Unwrap()
			}
			for _, err := range bad {
				errs = multierror.Append(errs, &SettingError{Setting: s.Name, Err: fmt.Errorf("config %s: %s: %w", path, s.Name, err)})
			}
			continue
		}
		s.Set(c, val)
		c.FileKeys = append(c.FileKeys, s.Name)
		if c.FileLines == nil {
			c.FileLines = map[string][]int{}
		}
		c.FileLines[s.Name] = valueLines(k, v)
		if c.FileValues == nil {
			c.FileValues = map[string]any{}
		}
		c.FileValues[s.Name] = s.value(c) // as Set stores it (trimmed, canonical), for reloads to compare
	}
	return errlist.Err(errs)
}

// definedTwice is the problem of key k of file path given again, first
// at line first, in setting's value (k itself, or a mapping in an
// extension key's value): a SettingError, so that a command that does not
// read the setting (or an extension key, which nothing reads) may go on.
func definedTwice(path, setting string, k *yaml.Node, first int) error {
	return &SettingError{Setting: setting, Err: fmt.Errorf("config %s: line %d: key %q already defined at line %d", path, k.Line, k.Value, first)}
}

// keyAt is a key as written at a line of the file.
type keyAt struct {
	line int
	key  string
}

// duplicate is a key k of a mapping given there before, at line first.
type duplicate struct {
	k     *yaml.Node
	first int
}

// duplicateKeys are the keys given twice in a mapping anywhere in n (an
// extension key's value, which nothing else reads), as yaml.v3's decoder
// refuses them: each mapping read once however often aliased (walked
// holds those read by earlier calls), and without recursion, as treeSize.
// An alias as a key is the key it names, as in the file's own mapping.
func duplicateKeys(n *yaml.Node, walked map[*yaml.Node]bool) []duplicate {
	var out []duplicate
	stack := []*yaml.Node{n}
	for len(stack) > 0 {
		n := resolve(stack[len(stack)-1])
		stack = stack[:len(stack)-1]
		if walked[n] {
			continue
		}
		walked[n] = true
		if n.Kind == yaml.MappingNode {
			first := map[string]int{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := keyNode(n.Content[i])
				if k.Kind != yaml.ScalarNode {
					continue
				}
				if line, dup := first[k.Value]; dup {
					out = append(out, duplicate{k, line})
				} else {
					first[k.Value] = k.Line
				}
			}
		}
		for i := len(n.Content) - 1; i >= 0; i-- { // file order
			stack = append(stack, n.Content[i])
		}
	}
	return out
}

// IsExtension reports whether name is an extension key of the config file
// (x-common: &common {...}), as docker compose has them: a place to park
// an anchored block for merges and aliases, read by nothing. No setting's
// name starts with x- (TestNoSettingIsAnExtensionKey).
func IsExtension(name string) bool { return strings.HasPrefix(name, "x-") }

// writtenOut is how many bytes the values of keys hold with their aliases
// and merges written out, as ApplyFile reads them: a scalar, or a list's
// scalar items; an extension key's value whole, whatever it holds. Its
// error is an extension key's value that holds itself. A node is sized
// once however many keys alias it, and the count stops past the bound:
// else an anchored value of many empty items aliased by many keys would
// be read keys times items, in a file well under the bound.
func writtenOut(keys []entry) (int, error) {
	const limit = smallfile.Max + 1
	n := 0
	// A list's scalar items (as a setting reads it) and a tree (as an
	// extension key holds it) are two sizes of one node.
	lists, trees := map[*yaml.Node]int{}, map[*yaml.Node]int{}
	for _, e := range keys {
		if n > smallfile.Max {
			break
		}
		if e.v == nil {
			continue
		}
		if e.k.Kind == yaml.ScalarNode && IsExtension(e.k.Value) {
			s, err := treeSize(e.v, limit, trees)
			if err != nil {
				return 0, err
			}
			n += s
			continue
		}
		switch v := resolve(e.v); v.Kind {
		case yaml.ScalarNode:
			n += len(v.Value)
		case yaml.SequenceNode:
			s, sized := lists[v]
			if !sized {
				for _, it := range v.Content {
					if it = resolve(it); it.Kind == yaml.ScalarNode {
						s = min(s+len(it.Value), limit)
					}
				}
				lists[v] = s
			}
			n += s
		}
	}
	return n, nil
}

// treeSize is how many bytes the scalars of n (keys included) hold with
// its aliases written out, counted up to limit: each node is sized once,
// however often aliased, and without recursion, whose depth aliases of
// nested anchors could multiply. A node that holds an alias of itself
// (&a [*a]), which yaml.v3 parses but refuses to decode, is an error.
// size holds the nodes sized already, by earlier calls too.
func treeSize(n *yaml.Node, limit int, size map[*yaml.Node]int) (int, error) {
	const sizing = -1
	children := func(n *yaml.Node) []*yaml.Node {
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil {
				return nil
			}
			return []*yaml.Node{n.Alias}
		}
		return n.Content
	}
	stack := []*yaml.Node{n}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		s, seen := size[top]
		if !seen {
			// The nodes sizing are those on the path to top: one of
			// them again is a node inside itself.
			size[top] = sizing
			for _, c := range children(top) {
				switch s, seen := size[c]; {
				case seen && s == sizing:
					return 0, fmt.Errorf("line %d: the alias *%s is inside its own anchor &%s: written out, the value never ends", top.Line, top.Value, top.Value)
				case !seen:
					stack = append(stack, c)
				}
			}
			continue
		}
		stack = stack[:len(stack)-1]
		if s != sizing {
			continue // pushed twice, by two aliases of it, and sized
		}
		total := len(top.Value)
		if top.Kind == yaml.AliasNode {
			total = 0 // its Value is the anchor's name
		}
		for _, c := range children(top) {
			total = min(total+size[c], limit)
		}
		size[top] = total
	}
	return size[n], nil
}

// valueLines are the line of key k and, for a list value v, of each item:
// an alias item's own line, where the file names that value.
func valueLines(k, v *yaml.Node) []int {
	lines := []int{k.Line}
	switch r := resolve(v); r.Kind {
	case yaml.SequenceNode:
		for _, it := range r.Content {
			lines = append(lines, it.Line)
		}
	case yaml.ScalarNode:
		lines = append(lines, v.Line)
	}
	return lines
}

// FileLine is the line of File that gave setting name its value: that of
// the list item value where the setting is a list holding it, else the
// key's; 0 when the file gave the setting none.
func (c *Config) FileLine(name, value string) int { return c.FileLiner()(name, value) }

// FileLiner is FileLine for many look-ups: each list's items are indexed
// once, so naming the line of every problem of a long list scans it once,
// not once per problem.
func (c *Config) FileLiner() func(name, value string) int {
	index := map[string]map[string]int{}
	return func(name, value string) int {
		lines := c.FileLines[name]
		if len(lines) == 0 {
			return 0
		}
		items, ok := index[name]
		if !ok {
			items = map[string]int{}
			for _, s := range settings {
				if l, isList := s.value(c).([]string); s.Name == name && isList && len(l) == len(lines)-1 {
					for i := len(l) - 1; i >= 0; i-- { // the first of equal items
						items[l[i]] = lines[i+1]
					}
				}
			}
			index[name] = items
		}
		if line, ok := items[value]; ok {
			return line
		}
		return lines[0]
	}
}

// SettingError is a problem with one setting's value, in the file, a flag
// or its environment variable: a command that does not use the setting
// may go on without it (`iptables --delete`).
type SettingError struct {
	Setting string
	Err     error
}

func (e *SettingError) Error() string { return e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

// UnknownKeyError is a config file key that names no setting.
type UnknownKeyError struct {
	Key string
	Err error
}

func (e *UnknownKeyError) Error() string { return e.Err.Error() }
func (e *UnknownKeyError) Unwrap() error { return e.Err }

// Resembles returns the setting only command reads (Setting.Command) that
// the key may be a misspelling of, or "": a command that ignores unknown
// keys (`iptables --delete`) must not ignore a misspelt setting of its own
// and act on the default instead.
func (e *UnknownKeyError) Resembles(command string) string {
	key := strings.ToLower(strings.ReplaceAll(e.Key, "_", "-"))
	if key == "" { // a list or mapping as the key: no name to resemble
		return ""
	}
	for _, s := range settings {
		if s.Command != command {
			continue
		}
		n := s.Name
		prefix := 0
		for prefix < min(len(key), len(n)) && key[prefix] == n[prefix] {
			prefix++
		}
		// The name as a whole word (iptables-chain), not inside one
		// (upload-timeout holds load); two edits only for long names:
		// log is two from load.
		edits := 2
		if len(n) <= 5 {
			edits = 1
		}
		if slices.Contains(strings.Split(key, "-"), n) || len(key) >= 4 && strings.Contains(n, key) || prefix >= 4 || EditDistance(key, n) <= edits {
			return n
		}
	}
	return ""
}

// Misspeller returns a function naming the one of names that a name is
// likely a misspelling of, or "": the nearest within two edits, case, '-'
// and '_' aside (ROUTES, MAXCONNS, max_conns), the first in byte order on
// a tie (names may come from a map, in no order of their own). A name of
// under six letters is a letter or two from too many (SOAK, PORTS) to say
// which was meant: only one in another case or with two neighbouring
// letters swapped (CHIAN) is sure. It names the setting a misspelt
// NEXMUX_ variable meant, where a guess decides whether to warn at all
// (RefusedMisspeller: unknown flags and file keys). Each of names is
// squashed once, for a file of many unknown keys; one whose length is more
// than two from a name's is more than two edits away.
func Misspeller(names []string) func(name string) string { return misspeller(names, false) }

// RefusedMisspeller is Misspeller for a name already refused, an unknown
// flag or config file key: it can only have meant one of names, and a
// wrong guess costs a hint, not a warning about something that was none of
// nexmux's business, so a short name one edit from one (--rout, ports:)
// names it too.
func RefusedMisspeller(names []string) func(name string) string { return misspeller(names, true) }

func misspeller(names []string, refused bool) func(name string) string {
	squashed := make([]string, len(names))
	for i, k := range names {
		squashed[i] = squash(k)
	}
	return func(name string) string {
		sq := squash(name)
		short := len(sq) < 6
		best, bestD := "", 3
		if short && refused {
			bestD = 2
		}
		for i, k := range names {
			sk := squashed[i]
			if short && !refused && !swapOrSame(sq, sk) || len(sq)-len(sk) > 2 || len(sk)-len(sq) > 2 {
				continue
			}
			if d := EditDistance(sq, sk); d < bestD || d == bestD && k < best {
				best, bestD = k, d
			}
		}
		return best
	}
}

// separators are left out of names compared by Misspeller. Built once:
// a file of many unknown keys squashes each.
var separators = strings.NewReplacer("_", "", "-", "")

func squash(s string) string { return strings.ToLower(separators.Replace(s)) }

// swapOrSame reports whether a is b, or b with two neighbouring bytes
// swapped.
func swapOrSame(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	i := 0
	for i < len(a) && a[i] == b[i] {
		i++
	}
	return i == len(a) || i+1 < len(a) && a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:]
}

// EditDistance is the optimal string alignment distance of a and b (bytes):
// insertions, deletions, substitutions and swaps of neighbours.
func EditDistance(a, b string) int {
	// Three rows of the matrix (a swap looks two back), on the stack for
	// names of a setting's length: a file of many unknown keys compares
	// each with every setting.
	var small [3 * 32]int
	n := len(b) + 1
	buf := small[:0]
	if 3*n > len(small) {
		buf = make([]int, 0, 3*n)
	}
	buf = buf[:3*n]
	prev2, prev, cur := buf[:n], buf[n:2*n], buf[2*n:]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// CommandOf is the one command that reads the setting named
// (Setting.Command); "" for a setting every command reads, or no setting.
func CommandOf(name string) string {
	for _, s := range settings {
		if s.Name == name {
			return s.Command
		}
	}
	return ""
}

// decode reads a YAML value as the flag would read its text.
func decode(s *Setting, n *yaml.Node) (any, error) {
	if _, ok := s.def.([]string); ok {
		return listText(n)
	}
	text, err := scalarText(n)
	if err != nil {
		return nil, err
	}
	if _, ok := s.def.(string); ok {
		return text, nil
	}
	v, err := ParseText(s.def, text)
	if err != nil {
		return nil, fmt.Errorf("line %d: %q: %w", n.Line, text, err)
	}
	return v, nil
}

// signed refuses the signs strconv and time.ParseDuration take but nobody
// writes for a setting: a '+', and a '-' on zero ("-0" passed the checks
// that refuse negative values). A negative value keeps its '-', for
// Build to refuse saying so.
func signed(text string, zero bool) error {
	switch {
	case strings.HasPrefix(text, "+"):
		return errors.New("no '+' sign")
	case zero && strings.HasPrefix(text, "-"):
		return errors.New("zero takes no '-' sign")
	}
	return nil
}

// ParseText reads text as the command line and the environment give it,
// into a value of def's type: an int, a time.Duration or a bool.
func ParseText(def any, text string) (any, error) {
	switch def.(type) {
	case int:
		// Base 10 only: "010" is ten, as anyone writing a limit means.
		n, err := strconv.ParseInt(text, 10, strconv.IntSize)
		if err != nil {
			return nil, errors.New("want a whole number")
		}
		if err := signed(text, n == 0); err != nil {
			return nil, fmt.Errorf("want a whole number: %v", err)
		}
		return int(n), nil
	case time.Duration:
		d, err := time.ParseDuration(text)
		if err != nil {
			return nil, errors.New("want a duration such as 30s or 2m")
		}
		if err := signed(text, d == 0); err != nil {
			return nil, fmt.Errorf("want a duration such as 30s or 2m: %v", err)
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
