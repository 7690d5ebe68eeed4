package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A bad value the config file gave names the file and its line, as one
// the environment gave names its variable: unnamed, the reader looks for
// it on a command line that lacks it. A list's item names its own line;
// a value a flag or variable gave over the file's names no file line.
func TestBadFileValuesNameTheirLine(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	yaml := "cert: [" + strconv.Quote(crt) + "]\n" +
		"key: [" + strconv.Quote(key) + "]\n" +
		"route:\n" +
		"  - a.example.com=team-a\n" +
		"  - bad host=team-b\n" +
		"metrics-listen: nohost\n" +
		"max-conns: -5\n" +
		"log-level: loud\n" +
		"socks5-listen: \":99999\"\n" +
		"listen: bogus\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NEXMUX_SOCKS5_LISTEN", ":99998")
	_, errs, code := run(t, "check", "--config", file, "--listen", "also-bogus")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	for want, line := range map[string]int{`route "bad host=team-b"`: 5, `metrics-listen "nohost"`: 6, `max-conns -5`: 7, `log-level "loud"`: 8} {
		if l, suffix := lineOf(t, errs, want), fmt.Sprintf("(from config %s line %d)", file, line); !strings.HasSuffix(l, suffix) {
			t.Errorf("the line of %s does not end with %s: %q", want, suffix, l)
		}
	}
	if l := lineOf(t, errs, `socks5-listen ":99998"`); !strings.HasSuffix(l, "(from NEXMUX_SOCKS5_LISTEN)") {
		t.Errorf("the variable's value over the file's: %q", l)
	}
	if l := lineOf(t, errs, `listen "also-bogus"`); strings.Contains(l, "(from ") {
		t.Errorf("the flag's value over the file's blamed on another source: %q", l)
	}
}

// A pair's problem (`cert "C" / key "K": ...`) is the key's as much as the
// certificate's: it names both lines, as envNoted names both variables.
func TestBadFilePairNamesBothLines(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "nexmux.yaml")
	yaml := "route: [a.example.com=team-a]\n" +
		"cert:\n" +
		"  - " + strconv.Quote(filepath.Join(dir, "missing.crt")) + "\n" +
		"key:\n" +
		"  - " + strconv.Quote(filepath.Join(dir, "missing.key")) + "\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "check", "--config", file)
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d:\n%s", code, exitInvalid, errs)
	}
	if l, suffix := lineOf(t, errs, "missing.key: no such file"), fmt.Sprintf("(from config %s lines 3 and 5)", file); !strings.HasSuffix(l, suffix) {
		t.Errorf("the pair's problem does not end with %s: %q", suffix, l)
	}
}

// --config "" (a script's unset variable, `--config "$CONF"`) names a file
// that cannot be read, and is refused as one: it was read as no file at
// all, so the file's routes went missing without a word, and `iptables
// --delete` removed the default chain where the file may have named
// another. An empty NEXMUX_CONFIG is unset, as every empty variable is.
func TestEmptyConfigFlagIsRefused(t *testing.T) {
	crt, key := certFiles(t)
	_, errs, code := run(t, "check", "--config", "", "--route", "a.example.com=team-a", "--cert", crt, "--key", key, "--max-conns", "x")
	if code != exitInvalid || !strings.Contains(errs, `config "": `) || !strings.Contains(errs, `max-conns "x"`) {
		t.Errorf("check --config \"\": exit %d, want %d naming the empty --config and the other problems:\n%s", code, exitInvalid, errs)
	}
	out, errs, code := run(t, "iptables", "--config", "", "--delete")
	if code != exitInvalid || !strings.Contains(errs, "--chain") {
		t.Errorf("iptables --delete --config \"\": exit %d, want %d asking for the chain:\n%s%s", code, exitInvalid, out, errs)
	}
	t.Setenv("NEXMUX_CONFIG", "")
	if _, errs, code := run(t, "check", "--route", "a.example.com=team-a", "--cert", crt, "--key", key); code != 0 {
		t.Errorf("an empty NEXMUX_CONFIG: exit %d, want 0:\n%s", code, errs)
	}
}

// A clash between two items of a file list (a host routed twice) names
// the line of the item that clashes, not the list's key, as any other
// problem of an item does.
func TestFileItemClashNamesItsLine(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	yaml := "route:\n" +
		"  - a.example.com=team-a\n" +
		"  - b.example.com=team-b\n" +
		"  - a.example.com=team-c\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, _ := run(t, "check", "--config", file, "--cert", crt, "--key", key)
	if l, suffix := lineOf(t, errs, "a.example.com=team-c"), fmt.Sprintf("(from config %s line 4)", file); !strings.HasSuffix(l, suffix) {
		t.Errorf("the clash does not end with %s: %q", suffix, l)
	}
}

// Each problem of a long list of clashing items is named by its own
// line (that it takes a look-up per problem, not a scan of the list, is
// config's BenchmarkFileLinerLongList).
func TestManyFileItemProblemsNamedByTheirLines(t *testing.T) {
	crt, key := certFiles(t)
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	var b strings.Builder
	b.WriteString("route:\n")
	const n = 2000
	for i := range n {
		fmt.Fprintf(&b, "  - h.example.com=r%d\n", i)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "check", "--config", file, "--cert", crt, "--key", key)
	if code != exitInvalid {
		t.Errorf("%d clashing routes: exit %d, want %d", n-1, code, exitInvalid)
	}
	for _, i := range []int{7, n - 1} {
		if l, suffix := lineOf(t, errs, fmt.Sprintf("h.example.com=r%d:", i)), fmt.Sprintf("(from config %s line %d)", file, i+2); !strings.HasSuffix(l, suffix) {
			t.Errorf("the clash of item %d does not end with %s: %q", i, suffix, l)
		}
	}
}
