package route

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-multierror"
)

// Seeds beyond testdata/fuzz/<Name>/ (which CI replays as plain tests).
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"team-a", "pull:g,push:h", "push:h,pull:g", "pull:g", "../x", "pull:g,pull:h", "a%2fb", "pull:,push:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := parseTarget(s)
		if err != nil {
			if tg != (Target{}) {
				t.Fatalf("parseTarget(%q) returned %+v with error %v", s, tg, err)
			}
			return
		}
		checkTarget(t, s, tg)
		again, err := parseTarget(tg.String())
		if err != nil || again != tg {
			t.Fatalf("parseTarget(%q) = %+v, but its String %q parses to %+v, %v", s, tg, tg.String(), again, err)
		}
	})
}

func checkTarget(t *testing.T, in string, tg Target) {
	t.Helper()
	for _, r := range []string{tg.Pull, tg.Push} {
		if err := ValidRepoName(r); err != nil {
			t.Fatalf("%q accepted with repository %q: %v", in, r, err)
		}
	}
}

// FuzzBuild feeds comma-separated pieces (what urfave/cli makes of an
// environment variable, before config glues split targets back) to every
// part of a Spec.
func FuzzBuild(f *testing.F) {
	f.Add("a.example.com=pull:g,push:h,*.example.com=r", "8082=r,8083=pull:g,push:h", "git.example.com=10.0.0.1:443", "fallback", 8443)
	f.Add("A.example.com.=r,a.example.com=s", "8443=r", "x=y", "", 8443)
	f.Add("a.*.com=x,*.com=y,10.0.0.1=z", "0=x,65536=y,abc=../z", "*.example.com=[::1]:443", "_x", 0)
	f.Fuzz(func(t *testing.T, routes, ports, pass, def string, listen int) {
		spec := Spec{
			Routes:      strings.Split(routes, ","),
			Ports:       strings.Split(ports, ","),
			Passthrough: strings.Split(pass, ","),
			Default:     def,
			ListenPorts: []int{listen},
		}
		tab, err := Build(spec)
		if err != nil {
			var errs *multierror.Error
			if tab != nil || !errors.As(err, &errs) || len(errs.Errors) == 0 {
				t.Fatalf("Build error %v with table %v", err, tab)
			}
			for _, e := range errs.Errors {
				if e == nil {
					t.Fatal("nil problem in the error list")
				}
			}
			return
		}
		for _, r := range tab.Routes() {
			if r.Passthrough == "" {
				checkTarget(t, r.Key, r.Target)
			} else if r.Target != (Target{}) {
				t.Fatalf("passthrough route %v has a target", r)
			}
			switch r.Kind {
			case KindDefault:
				if tab.Default() != r {
					t.Fatalf("default route %v not returned by Default", r)
				}
			case KindPort:
				if r.Key == ":" || len(tab.Ports()) == 0 {
					t.Fatalf("port route %v", r)
				}
			default:
				if n, err := NormalizePattern(r.Key); err != nil || n != r.Key {
					t.Fatalf("route key %q is not a normalised pattern (%q, %v)", r.Key, n, err)
				}
				probe := r.Key
				if suffix, ok := strings.CutPrefix(r.Key, "*."); ok {
					probe = "zz-probe." + suffix
					if got := tab.LookupHost(probe); got == nil {
						t.Fatalf("LookupHost(%q) = nil under %v", probe, r)
					}
					continue
				}
				if got := tab.LookupHost(probe); got != r {
					t.Fatalf("LookupHost(%q) = %v, want %v", probe, got, r)
				}
			}
		}
		for _, p := range tab.Ports() {
			if p == listen || p < 1 || p > 65535 {
				t.Fatalf("port route on %d (listen %d)", p, listen)
			}
		}
	})
}
