package iptables

import (
	"strings"
	"testing"
)

func TestParseFamilies(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    string
		wantErr string
	}{
		{in: []string{"iptables", "ip6tables"}, want: "iptables ip6tables"},
		{in: []string{"iptables ip6tables"}, want: "iptables ip6tables"}, // NEXMUX_FAMILIES as the script took it
		{in: []string{"ip6tables,iptables,ip6tables"}, want: "ip6tables iptables"},
		{in: []string{"iptables"}, want: "iptables"},
		{in: []string{"nft", "iptables", "arptables"}, wantErr: `family "nft": want iptables and/or ip6tables` + "\n" + `family "arptables": want iptables and/or ip6tables`},
		{in: []string{" "}, wantErr: "no family: want iptables and/or ip6tables"},
	} {
		got, err := ParseFamilies(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseFamilies(%q) error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("ParseFamilies(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestApplyRendersOnlyTheAskedJumps(t *testing.T) {
	r := Rules{Chain: "NX", ListenPort: 8443, Ports: []int{8083, 8082}}
	for _, tc := range []struct {
		pre, out bool
		want     []string
	}{
		{true, true, []string{"-A PREROUTING ", "-A OUTPUT "}},
		{true, false, []string{"-A PREROUTING "}},
		{false, true, []string{"-A OUTPUT "}},
		{false, false, nil},
	} {
		got, err := r.apply(tc.pre, tc.out, nil)
		if err != nil {
			t.Fatal(err)
		}
		var jumps []string
		for _, l := range strings.Split(got, "\n") {
			if strings.HasSuffix(l, "--comment nexmux -j NX") {
				jumps = append(jumps, l[:strings.Index(l, "-p")])
			}
		}
		if strings.Join(jumps, "|") != strings.Join(tc.want, "|") {
			t.Errorf("apply(%v, %v) jumps %q, want %q:\n%s", tc.pre, tc.out, jumps, tc.want, got)
		}
		if !strings.Contains(got, "--dport 8082 -m comment --comment nexmux -j REDIRECT --to-ports 8443\n-A NX -p tcp --dport 8083") {
			t.Errorf("apply(%v, %v): want the ports sorted:\n%s", tc.pre, tc.out, got)
		}
	}
}

// iptables-restore cannot add a jump only where it is missing, so the
// printed rules with their jumps create their chain and fail when piped in
// again. The rules say so, and name the two ways to apply them again:
// --jumps=false, or --load, which is idempotent.
func TestPrintedRulesSayHowToApplyAgain(t *testing.T) {
	got, err := Rules{Chain: "NX", ListenPort: 8443, Ports: []int{8082}, Jumps: true}.Apply()
	if err != nil {
		t.Fatal(err)
	}
	var head []string
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "#") {
			head = append(head, l)
		}
	}
	h := strings.Join(head, "\n")
	for _, want := range []string{"--jumps=false", "--load"} {
		if !strings.Contains(h, want) {
			t.Errorf("the printed rules' comments do not name %s for applying them again:\n%s", want, h)
		}
	}
}

// The first lines name the restore commands of the families the rules are
// for, and only those.
func TestApplyNamesItsFamilies(t *testing.T) {
	r := Rules{ListenPort: 8443, Ports: []int{8082}}
	for _, tc := range []struct {
		fams []string
		want string
	}{
		{nil, "#   iptables-restore --noflush  and  ip6tables-restore --noflush\n"},
		{[]string{"iptables"}, "#   iptables-restore --noflush\n"},
		{[]string{"ip6tables"}, "#   ip6tables-restore --noflush\n"},
	} {
		got, err := r.Apply(tc.fams...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got, "Apply with\n"+tc.want) {
			t.Errorf("Apply(%q):\n%s\nwant its first lines to name %q", tc.fams, got, tc.want)
		}
	}
}
