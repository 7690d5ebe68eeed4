package route

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-multierror"
)

func TestParseTarget(t *testing.T) {
	long := strings.Repeat("a", 200)
	for _, tc := range []struct {
		in    string
		want  Target
		split bool
	}{
		{"team-a", Target{"team-a", "team-a"}, false},
		{"  team-a  ", Target{"team-a", "team-a"}, false},
		{"docker.hosted_1", Target{"docker.hosted_1", "docker.hosted_1"}, false},
		{"Team-A", Target{"Team-A", "Team-A"}, false}, // Nexus names are case-sensitive: kept as typed
		{long, Target{long, long}, false},
		{"pull:team-a,push:team-a-hosted", Target{"team-a", "team-a-hosted"}, true},
		{"push:team-a-hosted,pull:team-a", Target{"team-a", "team-a-hosted"}, true},
		{"pull:team-a, push:team-a-hosted", Target{"team-a", "team-a-hosted"}, true},
		{" pull:g , push:h ", Target{"g", "h"}, true},
		{"pull:only", Target{"only", "only"}, false},
		{"push:only", Target{"only", "only"}, false},
		{"pull:same,push:same", Target{"same", "same"}, false},
	} {
		got, err := parseTarget(tc.in)
		if err != nil {
			t.Errorf("parseTarget(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want || got.Split() != tc.split {
			t.Errorf("parseTarget(%q) = %+v (split %v), want %+v (split %v)", tc.in, got, got.Split(), tc.want, tc.split)
		}
		// String is the canonical form and parses back to the same target.
		again, err := parseTarget(got.String())
		if err != nil || again != got {
			t.Errorf("parseTarget(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
		}
	}
}

func TestParseTargetErrors(t *testing.T) {
	for _, tc := range []struct{ in, wantErr string }{
		{"", "empty"},
		{"   ", "empty"},
		{"../x", "must not start"},
		{"..", "must not start"},
		{".x", "must not start"},
		{"_x", "must not start"},
		{"a/b", `'/'`},
		{"a%2fb", `'%'`},
		{"a%2e%2e", `'%'`},
		{"a b", `' '`},
		{"a\\b", `'\\'`},
		{"a\x00b", `'\x00'`},
		{"täm", "has"},
		{strings.Repeat("a", 201), "longer than 200"},
		{"a,b", `','`},
		{"pull:", "empty"},
		{"push:", "empty"},
		{"pull:g,pull:h", "pull repository given twice"},
		{"push:g,push:h", "push repository given twice"},
		{"pull:g,push:h,pull:i", "pull repository given twice"},
		{"pull:g,", "want pull:REPO"},
		{"pull:g,,push:h", "want pull:REPO"},
		{"get:g", "unknown kind"},
		{"PULL:g", "unknown kind"},
		{"pull:../x", "must not start"},
		{"pull:g,push:a/b", `'/'`},
		{"pull:g,push:h:i", `':'`},
		{"team:a", "unknown kind"},
	} {
		got, err := parseTarget(tc.in)
		if err == nil {
			t.Errorf("parseTarget(%q) = %+v, want error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("parseTarget(%q) error %q does not mention %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestValidRepoName(t *testing.T) {
	for _, ok := range []string{"a", "A", "0", "team-a", "team_a", "team.a", "a..b", "a.", "a-", strings.Repeat("x", 200)} {
		if err := ValidRepoName(ok); err != nil {
			t.Errorf("ValidRepoName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".x", "_x", "-x/..", "a/b", "a%2fb", "a?b", "a#b", "a;b", "a:b", "a b", "a\tb", "a\nb", "a\\b", "é", strings.Repeat("x", 201)} {
		if err := ValidRepoName(bad); err == nil {
			t.Errorf("ValidRepoName(%q) = nil, want error", bad)
		}
	}
}

func TestNormalizePattern(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"team-a.example.com", "team-a.example.com"},
		{"Team-A.Example.COM", "team-a.example.com"},
		{"team-a.example.com.", "team-a.example.com"},
		{"TEAM-A.EXAMPLE.COM.", "team-a.example.com"},
		{"  team-a.example.com  ", "team-a.example.com"},
		{"*.example.com", "*.example.com"},
		{"*.Example.COM.", "*.example.com"},
		{"*.b.example.com", "*.b.example.com"},
		{"under_score.example.com", "under_score.example.com"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"localhost", "localhost"},
		{"1.2.3", "1.2.3"}, // not an IP address
		{strings.Repeat("a", 63) + ".example.com", strings.Repeat("a", 63) + ".example.com"},
	} {
		got, err := NormalizePattern(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizePattern(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizePatternErrors(t *testing.T) {
	long := strings.Repeat(strings.Repeat("a", 60)+".", 5) + "com" // 308 characters
	for _, tc := range []struct{ in, wantErr string }{
		{"", "empty host"},
		{".", "empty host"},
		{"   ", "empty host"},
		{"a.*.com", "'*' is allowed only"},
		{"*foo.com", "'*' is allowed only"},
		{"foo*.example.com", "'*' is allowed only"},
		{"*", "'*' is allowed only"},
		{"*.", "'*' is allowed only"},
		{"**.example.com", "'*' is allowed only"},
		{"*.*.example.com", "'*' is allowed only"},
		{"*.com", "top-level domain"},
		{"*.com.", "top-level domain"},
		{"10.0.0.1", "IP address"},
		{"10.0.0.1.", "IP address"},
		{"*.10.0.0.1", "IP address"},
		{"::1", "IP address"},
		{"[::1]", "IP address"},
		{"[2001:db8::1]", "IP address"},
		{"[::1]:443", "no port"},
		{"a.example.com:443", "no port"},
		{"*.example.com:443", "no port"},
		{"a..example.com", "empty or over-long label"},
		{".a.example.com", "empty or over-long label"},
		{strings.Repeat("a", 64) + ".example.com", "empty or over-long label"},
		{long, "longer than 253"},
		{"-a.example.com", "start or end with '-'"},
		{"a-.example.com", "start or end with '-'"},
		{"a b.example.com", "not allowed"},
		{"a/b.example.com", "not allowed"},
		{"a%2e.example.com", "not allowed"},
		{"täm.example.com", "not allowed"},
		{"a\x00.example.com", "not allowed"},
	} {
		got, err := NormalizePattern(tc.in)
		if err == nil {
			t.Errorf("NormalizePattern(%q) = %q, want error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("NormalizePattern(%q) error %q does not mention %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestBuildValid(t *testing.T) {
	tab, err := Build(Spec{
		Routes: []string{
			"team-a.example.com=team-a",
			"Team-B.Example.COM.=pull:team-b,push:team-b-hosted",
			"team-c.example.com=push:team-c-hosted,pull:team-c",
			"*.dev.example.com=dev",
			"example.com=apex", // an exact name and a wildcard on the same suffix are different routes
			"*.example.com=catchall",
		},
		Ports:       []string{"8082=team-a", " 8083 = pull:team-b,push:team-b-hosted"},
		Passthrough: []string{"git.example.com=10.0.0.5:443", "*.Legacy.example.COM=legacy.internal:8443", "v6.example.com=[2001:db8::1]:443"},
		Default:     "pull:fallback,push:fallback-hosted",
		ListenPorts: []int{8443},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ // sorted by key, byte order ('*' < ':' < letters)
		"*.dev.example.com => dev",
		"*.example.com => catchall",
		"*.legacy.example.com => passthrough legacy.internal:8443",
		":8082 => team-a",
		":8083 => pull:team-b,push:team-b-hosted",
		"default => pull:fallback,push:fallback-hosted",
		"example.com => apex",
		"git.example.com => passthrough 10.0.0.5:443",
		"team-a.example.com => team-a",
		"team-b.example.com => pull:team-b,push:team-b-hosted",
		"team-c.example.com => pull:team-c,push:team-c-hosted",
		"v6.example.com => passthrough [2001:db8::1]:443",
	}
	var got []string
	for _, r := range tab.Routes() {
		got = append(got, r.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("Routes():\n got %q\nwant %q", got, want)
	}
	if tab.Len() != len(want) {
		t.Errorf("Len = %d, want %d", tab.Len(), len(want))
	}
	if ps := tab.Ports(); !slices.Equal(ps, []int{8082, 8083}) {
		t.Errorf("Ports = %v", ps)
	}
	if d := tab.Default(); d == nil || d.Target != (Target{"fallback", "fallback-hosted"}) {
		t.Errorf("Default = %v", d)
	}
	// Routes returns a copy: callers cannot reorder the table.
	rs := tab.Routes()
	rs[0] = nil
	if tab.Routes()[0] == nil {
		t.Error("Routes() exposes the table's slice")
	}
}

func TestBuildEmpty(t *testing.T) {
	tab, err := Build(Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 0 || tab.Default() != nil || tab.LookupHost("a.example.com") != nil || tab.LookupPort(8082) != nil || len(tab.Ports()) != 0 {
		t.Errorf("empty spec routes something: %v", tab.Routes())
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     Spec
		wantErr  []string // substrings of the error
		problems int      // number of problems; 0 means len(wantErr)
	}{
		{"route without =", Spec{Routes: []string{"a.example.com"}}, []string{"want HOST=TARGET (HOST=REPO or"}, 0},
		{"route empty target", Spec{Routes: []string{"a.example.com="}}, []string{"empty repository name"}, 0},
		{"route bad host and bad repo: one line", Spec{Routes: []string{"a.*.com=../x"}}, []string{"'*' is allowed only", "must not start"}, 1},
		{"duplicate route", Spec{Routes: []string{"a.example.com=x", "a.example.com=y"}}, []string{"already routed"}, 0},
		{"duplicate route differing in case", Spec{Routes: []string{"a.example.com=x", "A.EXAMPLE.com=y"}}, []string{"already routed"}, 0},
		{"duplicate route differing in trailing dot", Spec{Routes: []string{"a.example.com=x", "a.example.com.=y"}}, []string{"already routed"}, 0},
		{"duplicate wildcard", Spec{Routes: []string{"*.example.com=x", "*.Example.Com.=y"}}, []string{"already routed"}, 0},
		{"route and passthrough on one name", Spec{Routes: []string{"a.example.com=x"}, Passthrough: []string{"A.example.com=b:443"}}, []string{"already routed"}, 0},
		{"wildcard in the middle", Spec{Routes: []string{"a.*.com=x"}}, []string{"'*' is allowed only"}, 0},
		{"wildcard glued to a label", Spec{Routes: []string{"*foo.com=x"}}, []string{"'*' is allowed only"}, 0},
		{"wildcard over a TLD", Spec{Routes: []string{"*.com=x"}}, []string{"top-level domain"}, 0},
		{"IP as host", Spec{Routes: []string{"192.168.1.10=x"}}, []string{"IP address"}, 0},
		{"port in host", Spec{Routes: []string{"a.example.com:8443=x"}}, []string{"no port"}, 0},
		{"repo ../x", Spec{Routes: []string{"a.example.com=../x"}}, []string{"must not start"}, 0},
		{"repo .x", Spec{Routes: []string{"a.example.com=.x"}}, []string{"must not start"}, 0},
		{"repo _x", Spec{Routes: []string{"a.example.com=_x"}}, []string{"must not start"}, 0},
		{"repo a/b", Spec{Routes: []string{"a.example.com=a/b"}}, []string{`'/'`}, 0},
		{"repo a%2fb", Spec{Routes: []string{"a.example.com=a%2fb"}}, []string{`'%'`}, 0},
		{"pull twice", Spec{Routes: []string{"a.example.com=pull:g,pull:h"}}, []string{"pull repository given twice"}, 0},
		{"port 0", Spec{Ports: []string{"0=x"}}, []string{"not a port number"}, 0},
		{"port 65536", Spec{Ports: []string{"65536=x"}}, []string{"not a port number"}, 0},
		{"port abc", Spec{Ports: []string{"abc=x"}}, []string{"not a port number"}, 0},
		{"port -1", Spec{Ports: []string{"-1=x"}}, []string{"not a port number"}, 0},
		{"port empty", Spec{Ports: []string{"=x"}}, []string{"not a port number"}, 0},
		// strconv.Atoi takes a sign; a port is digits only, written as it
		// is compared (no leading zero).
		{"port +8082", Spec{Ports: []string{"+8082=team-x"}}, []string{`"+8082" is not a port number`}, 0},
		{"port -0", Spec{Ports: []string{"-0=x"}}, []string{"not a port number"}, 0},
		{"port 08082", Spec{Ports: []string{"08082=x"}}, []string{`"08082" is not a port number`}, 0},
		{"port with a blank inside", Spec{Ports: []string{"80 82=x"}}, []string{"not a port number"}, 0},
		{"port 99999999999999999999", Spec{Ports: []string{"99999999999999999999=x"}}, []string{"not a port number"}, 0},
		{"every lax port listed", Spec{Ports: []string{"+8082=a", "08083=b", "+0=c"}}, []string{`"+8082"`, `"08083"`, `"+0"`}, 0},
		{"port without =", Spec{Ports: []string{"8082"}}, []string{"want PORT=TARGET (PORT=REPO or"}, 0},
		{"port bad repo", Spec{Ports: []string{"8082=a/b"}}, []string{`'/'`}, 0},
		{"port bad number and bad repo: two problems", Spec{Ports: []string{"abc=a/b"}}, []string{"not a port number", `'/'`}, 0},
		{"port on the listen port", Spec{Ports: []string{"8443=x"}, ListenPorts: []int{8443}}, []string{"--listen port"}, 0},
		{"duplicated port", Spec{Ports: []string{"8082=x", "8082=y"}}, []string{"already routed"}, 0},
		{"duplicated port, other spelling", Spec{Ports: []string{"8082=x", "08082=y"}}, []string{`"08082" is not a port number`}, 0},
		{"passthrough without =", Spec{Passthrough: []string{"git.example.com"}}, []string{"want HOST=ADDR"}, 0},
		{"passthrough bad host", Spec{Passthrough: []string{"a.*.com=b:443"}}, []string{"'*' is allowed only"}, 0},
		{"passthrough addr without port", Spec{Passthrough: []string{"git.example.com=backend"}}, []string{"not HOST:PORT"}, 0},
		{"passthrough addr empty host", Spec{Passthrough: []string{"git.example.com=:443"}}, []string{"no host"}, 0},
		{"passthrough addr port 0", Spec{Passthrough: []string{"git.example.com=backend:0"}}, []string{"not a port"}, 0},
		{"passthrough addr port abc", Spec{Passthrough: []string{"git.example.com=backend:abc"}}, []string{"not a port"}, 0},
		{"passthrough addr port +443", Spec{Passthrough: []string{"git.example.com=backend:+443"}}, []string{`"+443" is not a port`}, 0},
		{"passthrough addr port 0443", Spec{Passthrough: []string{"git.example.com=backend:0443"}}, []string{`"0443" is not a port`}, 0},
		{"passthrough addr port -0", Spec{Passthrough: []string{"git.example.com=backend:-0"}}, []string{`"-0" is not a port`}, 0},
		{"passthrough addr host with a blank", Spec{Passthrough: []string{"git.example.com=a b:443"}}, []string{"not a host name or IP address"}, 0},
		{"passthrough addr host with an empty label", Spec{Passthrough: []string{"git.example.com=a..b:443"}}, []string{"not a host name or IP address"}, 0},
		{"passthrough addr host with a leading hyphen", Spec{Passthrough: []string{"git.example.com=-b-:443"}}, []string{"not a host name or IP address"}, 0},
		{"passthrough addr wildcard host", Spec{Passthrough: []string{"git.example.com=*.b.com:443"}}, []string{"not a host name or IP address"}, 0},
		{"passthrough bad host and bad addr: two problems", Spec{Passthrough: []string{"a.*.com=b:0"}}, []string{"'*' is allowed only", "not a port"}, 0},
		{"passthrough addr URL", Spec{Passthrough: []string{"git.example.com=https://b:443"}}, []string{"git.example.com=https://b:443"}, 0},
		{"passthrough duplicate", Spec{Passthrough: []string{"git.example.com=a:443", "GIT.example.com.=b:443"}}, []string{"already routed"}, 0},
		{"default bad repo", Spec{Default: "../x"}, []string{"default-route", "must not start"}, 1},
		{"default pull twice", Spec{Default: "pull:a,pull:b"}, []string{"given twice"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := Build(tc.spec)
			if err == nil {
				t.Fatalf("Build = %v, want error", tab.Routes())
			}
			if tab != nil {
				t.Error("Build returned a table with an error")
			}
			var errs *multierror.Error
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not a *multierror.Error", err)
			}
			wantN := tc.problems
			if wantN == 0 {
				wantN = len(tc.wantErr)
			}
			if len(errs.Errors) != wantN {
				t.Fatalf("%d problems, want %d:\n%v", len(errs.Errors), wantN, err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestBuildReportsEverything: one Build, every problem, one line each.
func TestBuildReportsEverything(t *testing.T) {
	_, err := Build(Spec{
		Routes: []string{
			"no-equals.example.com", // 1 syntax (first: a later one would be a continuation)
			"ok.example.com=team-a",
			"OK.example.com.=team-b",      // 2 duplicate
			"a.*.example.com=x",           // 3 wildcard in the middle
			"*.com=x",                     // 4 wildcard TLD
			"10.1.2.3=x",                  // 5 IP as host
			"p.example.com:443=x",         // 6 port in host
			"r.example.com=../x",          // 7 bad repo
			"s.example.com=pull:a,pull:b", // 8 pull twice
		},
		Ports: []string{
			"8082=team-a",
			"8082=team-b", // 9 duplicate port
			"0=x",         // 10 bad port
			"65536=x",     // 11 bad port
			"abc=../y",    // 12, 13 bad port and bad repo
			"8443=x",      // 14 listen port
		},
		Passthrough: []string{
			"git.example.com=backend",      // 15 no port
			"ok.example.com=backend:443",   // 16 duplicate of a route
			"*foo.example.com=backend:443", // 17 bad wildcard
		},
		Default:     "_x", // 18
		ListenPorts: []int{8443},
	})
	var errs *multierror.Error
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not a *multierror.Error", err, err)
	}
	const want = 18
	if len(errs.Errors) != want {
		t.Errorf("%d problems, want %d:\n%v", len(errs.Errors), want, err)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != want {
		t.Errorf("Error() has %d lines, want %d", len(lines), want)
	}
	// Each problem is reachable with errors.Is/As through Unwrap.
	for _, e := range errs.Errors {
		if !errors.Is(err, e) {
			t.Errorf("errors.Is does not reach %q", e)
		}
	}
}

// A non-ASCII host (an internationalised name as typed) is refused naming
// the character written, and with its way out, the punycode form: the
// error named the first byte of its UTF-8 encoding instead ('Ã' for 'ü').
func TestNonASCIIHostNamedAsWritten(t *testing.T) {
	_, err := NormalizePattern("bücher.example.com")
	if err == nil || !strings.Contains(err.Error(), "'ü'") || !strings.Contains(err.Error(), "xn--") {
		t.Errorf("NormalizePattern(bücher.example.com): %v, want 'ü' named and the punycode form suggested", err)
	}
}

// A repository name with a non-ASCII letter is refused naming that letter,
// not the first byte of its UTF-8 encoding ('Ã' for 'ë').
func TestNonASCIIRepoNameNamedAsWritten(t *testing.T) {
	err := ValidRepoName("tëam")
	if err == nil || !strings.Contains(err.Error(), "'ë'") {
		t.Errorf("ValidRepoName(tëam): %v, want 'ë' named", err)
	}
}

// A passthrough backend is any host name (any case, absolute with a
// trailing dot, an internal name with '_') or IP address (IPv6 with a zone).
func TestPassthroughBackendHostForms(t *testing.T) {
	for _, addr := range []string{"Backend.Internal:443", "backend.internal.:443", "localhost:443", "git_backend:22", "10.0.0.5:443", "[2001:db8::1]:443", "[fe80::1%eth0]:443"} {
		if _, err := Build(Spec{Passthrough: []string{"git.example.com=" + addr}}); err != nil {
			t.Errorf("passthrough to %s: %v", addr, err)
		}
	}
}

// A backend's zone is an interface name (letters, digits, '.', '-', '_')
// or index, and an IPv4 address is written as Go reads one: anything else
// passed check and failed every dial ("lookup 127.0.0.01: no such host").
func TestPassthroughBackendHostsDialWouldRefuse(t *testing.T) {
	for addr, want := range map[string]string{
		"[fe80::1%eth0@x]:443": `zone "eth0@x" is not an interface name`,
		"[fe80::1%eth 0]:443":  `zone "eth 0" is not an interface name`,
		"127.0.0.01:443":       `"127.0.0.01" is not a host name or IP address`,
		"10.1:443":             `"10.1" is not a host name or IP address`,
		"127.0.0.1.:443":       `"127.0.0.1." is not a host name or IP address`,
	} {
		_, err := Build(Spec{Passthrough: []string{"git.example.com=" + addr}})
		if err == nil || !strings.Contains(err.Error(), "passthrough") || !strings.Contains(err.Error(), want) {
			t.Errorf("passthrough to %s: %v, want refused: %s", addr, err, want)
		}
	}
	for _, addr := range []string{"[fe80::1%eth0.100]:443", "[fe80::1%br-lan_1]:443", "1.2.3.4.nip.io:443", "v4.123abc:443"} {
		if _, err := Build(Spec{Passthrough: []string{"git.example.com=" + addr}}); err != nil {
			t.Errorf("passthrough to %s: %v", addr, err)
		}
	}
}

// A zone written as a URL writes it ("%25eth0", copied from
// http://[fe80::1%25eth0]:443) is no zone in HOST:PORT, where the dialer
// reads "%" literally: it is refused at start, naming the form to write,
// instead of failing every dial on interface "25eth0". A zone that is an
// interface index ("%25" is index 25) is a zone as written.
func TestPassthroughBackendURLEscapedZone(t *testing.T) {
	_, err := Build(Spec{Passthrough: []string{"git.example.com=[fe80::1%25eth0]:443"}})
	if err == nil || !strings.Contains(err.Error(), "passthrough") || !strings.Contains(err.Error(), "[fe80::1%eth0]:443") {
		t.Errorf("passthrough to [fe80::1%%25eth0]:443: %v, want refused, suggesting [fe80::1%%eth0]:443", err)
	}
	for _, addr := range []string{"[fe80::1%25]:443", "[fe80::1%251]:443", "[fe80::1%2]:443"} {
		if _, err := Build(Spec{Passthrough: []string{"git.example.com=" + addr}}); err != nil {
			t.Errorf("passthrough to %s (an interface index): %v", addr, err)
		}
	}
}

// Every byte of a zone is checked, its first and its last too, and a zone
// with a byte no interface name has is named as such even when it starts
// "25": the URL-escaping hint would suggest a zone still refused. A name
// that starts with a '2' and is no index is an interface name as written.
func TestPassthroughBackendZoneCheckedWhole(t *testing.T) {
	for addr, want := range map[string]string{
		"[fe80::1%@eth0]:443":   `zone "@eth0" is not an interface name`,
		"[fe80::1%eth0@]:443":   `zone "eth0@" is not an interface name`,
		"[fe80::1%25eth 0]:443": `zone "25eth 0" is not an interface name`,
	} {
		_, err := Build(Spec{Passthrough: []string{"git.example.com=" + addr}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("passthrough to %s: %v, want refused: %s", addr, err, want)
		}
	}
	if _, err := Build(Spec{Passthrough: []string{"git.example.com=[fe80::1%2g0]:443"}}); err != nil {
		t.Errorf("passthrough to [fe80::1%%2g0]:443 (interface 2g0): %v", err)
	}
}
