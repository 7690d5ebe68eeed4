package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustSet(t *testing.T, urls ...string) *Set {
	t.Helper()
	spec, err := ParseSpec(urls, nil)
	if err != nil {
		t.Fatal(err)
	}
	return NewSet(spec, quiet())
}

// Replicas listing the same nodes in any order, spelled differently, agree
// on ids, the derived key and so on every tag.
func TestNodeIdentityIsOrderFree(t *testing.T) {
	a := mustSet(t, "http://Nexus-0.nexus:8081/nexus/", "http://nexus-1.nexus:8081/nexus")
	b := mustSet(t, "http://nexus-1.nexus:8081/nexus", "HTTP://nexus-0.nexus.:8081/nexus")
	for i := range a.Nodes() {
		if a.Nodes()[i].ID != b.Nodes()[i].ID {
			t.Fatalf("ids differ: %s vs %s", a.Nodes()[i].ID, b.Nodes()[i].ID)
		}
	}
	n := a.Nodes()[1]
	tag := a.Tag(n, "uuid-1")
	got, err := b.Untag(tag, "uuid-1")
	if err != nil || got.ID != n.ID {
		t.Fatalf("replica b read %v %v", got, err)
	}
	if strings.Contains(tag, "nexus") {
		t.Fatalf("tag %q names a host", tag)
	}
	if _, err := ParseSpec([]string{"http://a:1/x", "https://b:1/x"}, []string{"http://c:1/x"}); err == nil || !strings.Contains(err.Error(), "scheme") || !strings.Contains(err.Error(), "drain-upstream") {
		t.Fatalf("want both problems listed, got %v", err)
	}
	if _, err := ParseSpec([]string{"http://a:80", "http://a"}, nil); err == nil {
		t.Fatal("a node listed twice was accepted")
	}
}

// TestNodeIdentityOfIPLiterals: an IP literal is one node however it is
// written ("[0:0::1]" is "[::1]", "[::ffff:10.0.0.5]" is 10.0.0.5), so
// replicas that spell it differently still read each other's upload tags,
// a node written twice is refused, and a drained node may be spelled
// either way.
func TestNodeIdentityOfIPLiterals(t *testing.T) {
	a := mustSet(t, "http://[::1]:8081/nexus", "http://10.0.0.5:8081/nexus")
	b := mustSet(t, "http://[0:0:0:0:0:0:0:1]:8081/nexus", "http://[::ffff:10.0.0.5]:8081/nexus")
	for i := range a.Nodes() {
		if a.Nodes()[i].ID != b.Nodes()[i].ID {
			t.Fatalf("ids differ: %s vs %s", a.Nodes()[i].ID, b.Nodes()[i].ID)
		}
	}
	for _, n := range a.Nodes() {
		got, err := b.Untag(a.Tag(n, "uuid-1"), "uuid-1")
		if err != nil || got.ID != n.ID {
			t.Fatalf("replica b read the tag for %s as %v %v", n.ID, got, err)
		}
	}
	if _, err := ParseSpec([]string{"http://[::1]:8081", "http://[0::1]:8081"}, nil); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("one IPv6 node written twice: %v, want listed twice", err)
	}
	if _, err := ParseSpec([]string{"http://[2001:db8::1]:8081", "http://[2001:db8::2]:8081"}, []string{"http://[2001:DB8:0::1]:8081"}); err != nil {
		t.Fatalf("drain of the node spelled another way: %v", err)
	}
	if _, err := ParseSpec([]string{"http://a:1"}, []string{"http://a:1"}); err == nil || !strings.Contains(err.Error(), "every --upstream node is drained") {
		t.Fatalf("drain of the only node: %v, want refused", err)
	}
}

func TestTagTamperedAbsentAndBoundToUpload(t *testing.T) {
	s := mustSet(t, "http://a:1", "http://b:1")
	n := s.Nodes()[0]
	tag := s.Tag(n, "u1")
	if _, err := s.Untag(tag, "u2"); !errors.Is(err, ErrTagTampered) {
		t.Fatalf("tag moved to another upload: %v", err)
	}
	bad := []byte(tag)
	bad[len(bad)-1] ^= 1
	if bad[len(bad)-1] == tag[len(tag)-1] {
		t.Fatal("no change")
	}
	if _, err := s.Untag(string(bad), "u1"); !errors.Is(err, ErrTagTampered) {
		t.Fatalf("flipped tag: %v", err)
	}
	if _, err := s.Untag("", "u1"); !errors.Is(err, ErrTagAbsent) {
		t.Fatalf("empty tag: %v", err)
	}
	// A secret shared by the replicas: the derived key no longer verifies.
	other := mustSet(t, "http://a:1", "http://b:1")
	other.SetSecret([]byte("0123456789abcdef0123"))
	if _, err := other.Untag(tag, "u1"); !errors.Is(err, ErrTagTampered) {
		t.Fatalf("tag under another key: %v", err)
	}
	// A tag for a node the set does not have counts as absent.
	third := mustSet(t, "http://c:1", "http://a:1", "http://b:1")
	third.SetSecret([]byte("0123456789abcdef0123"))
	other2 := mustSet(t, "http://a:1", "http://b:1")
	other2.SetSecret([]byte("0123456789abcdef0123"))
	c := third.Nodes()[2]
	if c.Host != "c:1" {
		t.Fatalf("order %v", c.Host)
	}
	if _, err := other2.Untag(third.Tag(c, "u1"), "u1"); !errors.Is(err, ErrTagAbsent) {
		t.Fatalf("unknown node: %v", err)
	}
}

func TestSplitTagKeepsTheRestByteForByte(t *testing.T) {
	for _, tc := range []struct{ in, rest, tag string }{
		{"", "", ""},
		{"_nexmux=T", "", "T"},
		{"_state=a%2Fb&_nexmux=T&digest=sha256%3Aab", "_state=a%2Fb&digest=sha256%3Aab", "T"},
		{"digest=sha256:ab&_nexmux=T", "digest=sha256:ab", "T"},
		{"a=1;b=2&&x", "a=1;b=2&&x", ""},
		{"x_nexmux=1", "x_nexmux=1", ""},
		// "$location?digest=..." of a script written for Nexus's
		// query-less Locations.
		{"_nexmux=T?digest=sha256:ab", "digest=sha256:ab", "T"},
		{"_state=x&_nexmux=T?digest=sha256%3Aab&y=1", "_state=x&digest=sha256%3Aab&y=1", "T"},
		{"_nexmux=T?", "", "T"},
	} {
		rest, tag := SplitTag(tc.in)
		if rest != tc.rest || tag != tc.tag {
			t.Errorf("SplitTag(%q) = %q, %q; want %q, %q", tc.in, rest, tag, tc.rest, tc.tag)
		}
	}
	if got := AddTag("/v2/a/blobs/uploads/u?_state=x", "T"); got != "/v2/a/blobs/uploads/u?_state=x&_nexmux=T" {
		t.Fatal(got)
	}
	if got := AddTag("https://h/v2/a/blobs/uploads/u", "T"); got != "https://h/v2/a/blobs/uploads/u?_nexmux=T" {
		t.Fatal(got)
	}
}

// The README's ejection figures.
func TestPassiveEjectionBackoff(t *testing.T) {
	clock := time.Unix(1000, 0)
	s := mustSet(t, "http://a:1", "http://b:1")
	s.now = func() time.Time { return clock }
	a := s.Nodes()[0]
	fail := func(k int) {
		for range k {
			s.ReportResult(a, false, "status 503")
		}
	}
	picks := func() string {
		ns, err := s.Pick(Read, "")
		if err != nil {
			t.Fatal(err)
		}
		var hs []string
		for _, n := range ns {
			hs = append(hs, n.Host)
		}
		return strings.Join(hs, ",")
	}
	fail(4)
	s.ReportResult(a, true, "")
	fail(4)
	if !strings.Contains(picks(), "a:1") {
		t.Fatal("ejected before 5 failures in a row")
	}
	fail(1)
	if strings.Contains(picks(), "a:1") {
		t.Fatal("not ejected after 5 failures in a row")
	}
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 160 * time.Second} {
		if i > 0 {
			fail(5) // again right after coming back
		}
		clock = clock.Add(want - time.Millisecond)
		if strings.Contains(picks(), "a:1") {
			t.Fatalf("ejection %d: back before %v", i+1, want)
		}
		clock = clock.Add(time.Millisecond)
		if !strings.Contains(picks(), "a:1") {
			t.Fatalf("ejection %d: still out after %v", i+1, want)
		}
	}
	// A quiet minute after coming back: the next ejection is short again.
	clock = clock.Add(61 * time.Second)
	fail(5)
	clock = clock.Add(10 * time.Second)
	if !strings.Contains(picks(), "a:1") {
		t.Fatal("the backoff was not forgotten after a healthy minute")
	}
}

// Rendezvous: the same key picks the same node whatever the listing order,
// keys spread over the nodes, and removing a node moves only its keys.
func TestRendezvous(t *testing.T) {
	s1 := mustSet(t, "http://a:1", "http://b:1", "http://c:1")
	s2 := mustSet(t, "http://c:1", "http://a:1", "http://b:1")
	count := map[string]int{}
	for i := range 300 {
		k := fmt.Sprintf("repo@sha256:%064d", i)
		n1, _ := s1.Pick(ReadDigest, k)
		n2, _ := s2.Pick(ReadDigest, k)
		if n1[0].ID != n2[0].ID {
			t.Fatalf("replicas disagree on %s", k)
		}
		count[n1[0].Host]++
	}
	for h, c := range count {
		if c < 50 {
			t.Errorf("node %s got %d of 300 keys", h, c)
		}
	}
}

// Writes only to writable nodes; none writable but some readable is
// ErrNoneWritable; none reachable is ErrAllDown.
func TestPickStates(t *testing.T) {
	s := mustSet(t, "http://a:1", "http://b:1")
	a, b := s.Nodes()[0], s.Nodes()[1]
	for range agree {
		s.observeProbe(a, ReadOnly, true, false, "")
	}
	ns, err := s.Pick(Write, "")
	if err != nil || len(ns) != 1 || ns[0] != b {
		t.Fatalf("write pick %v %v", ns, err)
	}
	for range agree {
		s.observeProbe(b, ReadOnly, true, false, "")
	}
	if _, err := s.Pick(Write, ""); !errors.Is(err, ErrNoneWritable) {
		t.Fatalf("all read-only: %v", err)
	}
	if ns, err := s.Pick(Read, ""); err != nil || len(ns) != 2 {
		t.Fatalf("reads while read-only: %v %v", ns, err)
	}
	s.ReportConnectFailure(a, errors.New("refused"))
	s.observeProbe(b, Down, false, true, "refused")
	if _, err := s.Pick(Read, ""); !errors.Is(err, ErrAllDown) {
		t.Fatalf("all down: %v", err)
	}
	// b's status endpoint fails but it still answers HTTP: fail open.
	for range agree {
		s.observeProbe(b, Down, true, false, "status 500")
	}
	if ns, err := s.Pick(Read, ""); err != nil || len(ns) != 1 || ns[0] != b {
		t.Fatalf("fail open: %v %v", ns, err)
	}
	// One probe is not enough to change a state.
	s.observeProbe(b, Writable, true, false, "")
	if b.State() != Down {
		t.Fatal("one probe changed the state")
	}
	s.observeProbe(b, Writable, true, false, "")
	if b.State() != Writable {
		t.Fatal("two agreeing probes did not change the state")
	}
}

// A refused node URL is named without its password or query: the refusal
// is printed by check and serve, and logged on a refused reload.
func TestRefusedUpstreamHidesSecrets(t *testing.T) {
	_, err := ParseSpec([]string{
		"http://admin:s3cret@nexus-0:8081",
		"http://nexus-1:8081/?token=t0ken",
		"http://admin:p@ss w0rd@nexus-2:8081",
	}, []string{"http://admin:dr41n@nexus-9:8081"})
	if err == nil {
		t.Fatal("bad upstreams accepted")
	}
	msg := err.Error()
	for _, secret := range []string{"s3cret", "t0ken", "ss w0rd", "dr41n"} {
		if strings.Contains(msg, secret) {
			t.Errorf("refusal shows %q:\n%s", secret, msg)
		}
	}
	for _, named := range []string{"nexus-0:8081", "nexus-1:8081", "nexus-2:8081", "nexus-9:8081"} {
		if !strings.Contains(msg, named) {
			t.Errorf("refusal does not name %s:\n%s", named, msg)
		}
	}
}

// /upstreams says when its lastError happened: the text stays after the
// node recovers (it is the last one), and without a time an operator
// cannot tell a refusal of minutes ago from a current one.
func TestTableLastErrorAt(t *testing.T) {
	clock := time.Unix(1000, 0).UTC()
	s := mustSet(t, "http://a:1", "http://b:1")
	s.now = func() time.Time { return clock }
	a, b := s.Nodes()[0], s.Nodes()[1]
	s.ReportConnectFailure(a, errors.New("refused"))
	clock = clock.Add(time.Minute)
	s.ReportResult(b, false, "status 503")
	rows := map[string]NodeInfo{}
	for _, r := range s.Table() {
		rows[r.Node] = r
	}
	if r := rows[a.Host]; r.LastError != "refused" || !r.LastErrorAt.Equal(time.Unix(1000, 0).UTC()) {
		t.Errorf("node a: lastError %q at %v, want refused at %v", r.LastError, r.LastErrorAt, time.Unix(1000, 0).UTC())
	}
	if r := rows[b.Host]; r.LastError != "status 503" || !r.LastErrorAt.Equal(clock) {
		t.Errorf("node b: lastError %q at %v, want status 503 at %v", r.LastError, r.LastErrorAt, clock)
	}
	js, err := json.Marshal(rows[a.Host])
	if err != nil || !strings.Contains(string(js), `"lastErrorAt":"1970-01-01T00:16:40Z"`) {
		t.Errorf("JSON row %s (%v) lacks lastErrorAt", js, err)
	}
}

// /readyz's reason names why each node is not ready, not only its probed
// state: a writable node that is draining, ejected or not yet probed read
// "writable " (the state and an empty last error) in a refusal that asked
// for a writable node.
func TestReadableSaysWhyEachNodeIsNot(t *testing.T) {
	spec, err := ParseSpec([]string{"http://a:8081", "http://b:8081", "http://c:8081", "http://d:8081"}, []string{"http://a:8081"})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSet(spec, quiet())
	nodes := map[string]*Node{}
	for _, n := range s.Nodes() {
		nodes[n.Host] = n
	}
	set := func(host string, f func(n *Node)) {
		n := nodes[host]
		n.mu.Lock()
		defer n.mu.Unlock()
		n.joined, n.state = true, Writable
		f(n)
	}
	set("a:8081", func(n *Node) {})
	set("b:8081", func(n *Node) { n.state, n.ejectedUntil = ReadOnly, s.now().Add(time.Minute) })
	set("c:8081", func(n *Node) { n.joined = false })
	set("d:8081", func(n *Node) { n.state, n.lastErr = ReadOnly, "Nexus is read-only" })
	ok, why := s.Readable(true)
	if ok {
		t.Fatal("ready for writes with no node taking them")
	}
	for _, want := range []string{"a:8081: writable, draining", "b:8081: read-only, ejected", "c:8081: writable, not yet joined", "d:8081: read-only Nexus is read-only"} {
		if !strings.Contains(why, want) {
			t.Errorf("reason lacks %q: %s", want, why)
		}
	}
}

// An IPv6 zone written bare in a URL ("%eth0"), as it is in HOST:PORT
// settings, is refused naming the form a URL needs ("%25eth0"), and that
// form is a node.
func TestUpstreamZoneWrittenBare(t *testing.T) {
	_, err := ParseSpec([]string{"http://[fe80::1%eth0]:8081"}, nil)
	if err == nil || !strings.Contains(err.Error(), "http://[fe80::1%25eth0]:8081") {
		t.Errorf("a bare zone in an upstream URL: %v, want refused naming http://[fe80::1%%25eth0]:8081", err)
	}
	if _, err := ParseSpec([]string{"http://[fe80::1%25eth0]:8081"}, nil); err != nil {
		t.Errorf("the escaped zone: %v", err)
	}
}

// The hint names the URL with its credentials hidden.
func TestUpstreamZoneHintHidesCredentials(t *testing.T) {
	_, err := ParseSpec([]string{"http://admin:s3cret@[fe80::1%eth0]:8081"}, nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "%25eth0") {
		t.Errorf("a bare zone in an upstream URL with credentials: %v", err)
	}
}

// The hint is given when the password has a percent-encoded byte of its
// own before the address ("p%40ss"): the bare zone's "%" is the one inside
// the brackets, not the first in the URL.
func TestUpstreamZoneHintAfterEncodedPassword(t *testing.T) {
	_, err := ParseSpec([]string{"http://admin:p%40ss@[fe80::1%eth0]:8081"}, nil)
	if err == nil || strings.Contains(err.Error(), "p%40ss") || strings.Contains(err.Error(), "admin") || !strings.Contains(err.Error(), "[fe80::1%25eth0]:8081") {
		t.Errorf("a bare zone in an upstream URL after an encoded password: %v, want the %%25eth0 hint, credentials hidden", err)
	}
}

// Failing open (every node fails its status probes, some still answer
// HTTP) never takes a draining node: it is being taken out, and its
// requests would start over elsewhere once it is gone.
func TestFailOpenSkipsDrainingNodes(t *testing.T) {
	s := mustSet(t, "http://a:1", "http://b:1")
	a, b := s.Nodes()[0], s.Nodes()[1]
	s.setDrain([]string{b.ID})
	for range agree {
		s.observeProbe(a, Down, true, false, "status 500")
		s.observeProbe(b, Down, true, false, "status 500")
	}
	if ns, err := s.Pick(Read, ""); err != nil || len(ns) != 1 || ns[0] != a {
		var hosts []string
		for _, n := range ns {
			hosts = append(hosts, n.Host)
		}
		t.Fatalf("fail open with b draining: %v %v, want a alone", hosts, err)
	}
}

// A node's host is dialled as url.Parse gives it (its zone unescaped): one
// the dialer refuses ("lookup 127.0.0.01: no such host", a zone no
// interface has) passed check and failed only at the first dial. It is
// refused by the rule HOST:PORT settings follow; names stay names.
func TestUpstreamHostsDialWouldRefuse(t *testing.T) {
	for raw, want := range map[string]string{
		"http://127.0.0.01:8081":           `"127.0.0.01" is not a host name or IP address`,
		"http://10.1:8081":                 `"10.1" is not a host name or IP address`,
		"http://2130706433:8081":           `"2130706433" is not a host name or IP address`,
		"http://nex!us:8081":               `"nex!us" is not a host name or IP address`,
		"http://[fe80::1%25eth%200]:8081":  `zone "eth 0" is not an interface name`,
		"http://[fe80::1%2525eth0]:8081":   `[fe80::1%25eth0]`,
		"https://127.0.0.01/nexus":         `"127.0.0.01" is not a host name or IP address`,
		"http://[fe80::1%25eth0%3Bx]:8081": `zone "eth0;x" is not an interface name`,
	} {
		if _, _, _, _, err := Normalise(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want refused: %s", raw, err, want)
		}
	}
	for _, raw := range []string{
		"http://nexus:8081", "http://nexus.ns.svc.cluster.local:8081", "http://nexus.:8081", "http://NEXUS:8081",
		"http://nexus_1:8081", "http://[fe80::1%25eth0]:8081", "http://[fe80::1%25eth0.100]:8081", "http://[fe80::1%252]:8081",
		"http://[fe80::1%2525]:8081", "http://[::ffff:10.0.0.5]:8081", "http://10.0.0.5", "http://1.2.3.4.nip.io:8081",
	} {
		if _, _, _, _, err := Normalise(raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

// A URL with a password and a host the dialer refuses names both problems
// at once, the password hidden.
func TestUpstreamHostProblemWithCredentials(t *testing.T) {
	_, err := ParseSpec([]string{"http://admin:s3cret@127.0.0.01:8081"}, []string{"http://10.1:8081"})
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{`upstream "http://admin:xxxxx@127.0.0.01:8081": `, "credentials", `"127.0.0.01" is not a host name`, `drain-upstream "http://10.1:8081": "10.1" is not a host name`} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "s3cret") {
		t.Errorf("shows the password:\n%s", msg)
	}
}

// /readyz says what Pick does: a node passively ejected, whose probes pass,
// serves when no other node does, so it makes the replica ready. Not
// ready, a Kubernetes Service would drop every replica's endpoint while
// each could serve (the other node down during the ejection, 10 s to
// 160 s).
func TestReadableAgreesWithPickOnAnEjectedNode(t *testing.T) {
	s := mustSet(t, "http://a:8081", "http://b:8081")
	nodes := s.Nodes()
	for i, n := range nodes {
		n.mu.Lock()
		n.joined, n.state = true, Writable
		if i == 0 {
			n.state = Down
		} else {
			n.ejectedUntil = s.now().Add(time.Minute)
		}
		n.mu.Unlock()
	}
	for _, write := range []bool{false, true} {
		kind := Read
		if write {
			kind = Write
		}
		ns, err := s.Pick(kind, "")
		if err != nil || len(ns) != 1 || ns[0] != nodes[1] {
			t.Fatalf("Pick(write %v): %v %v, want the ejected node", write, ns, err)
		}
		if ok, why := s.Readable(write); !ok {
			t.Errorf("Readable(write %v) = not ready (%s) while Pick serves on the ejected node", write, why)
		}
	}
}

// Every problem of an --upstream URL is named at once, so that fixing one
// does not only bring the next to light.
func TestUpstreamProblemsNamedAtOnce(t *testing.T) {
	for raw, wants := range map[string][]string{
		"ftp://:99999?x":          {"scheme must be http or https", "no host", "no query, fragment or credentials allowed", "port 99999 is not 1-65535"},
		"http://10.1:0/nexus/./x": {`"10.1" is not a host name or IP address`, "context path /nexus/./x has a dot segment", "port 0 is not 1-65535"},
	} {
		_, _, _, _, err := Normalise(raw)
		for _, want := range wants {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want %q among the problems", raw, err, want)
			}
		}
	}
}

// A zone still escaped after url.Parse unescaped it, with a byte no
// interface name has, is named for that byte: the "escaped twice" hint
// would suggest a zone still refused.
func TestUpstreamZoneEscapedTwiceWithABadByte(t *testing.T) {
	_, _, _, _, err := Normalise("http://[fe80::1%2525eth%200]:8081")
	if want := `zone "25eth 0" is not an interface name`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("http://[fe80::1%%2525eth%%200]:8081: %v, want %s", err, want)
	}
}

// The %25ZONE hint is for a bare '%' inside an IPv6 literal's brackets: a
// bad escape in the path, or a zone already written %25 (here an empty
// one), gets none, and the problem is url.Parse's alone.
func TestUpstreamNoZoneHintOutsideABareZone(t *testing.T) {
	for _, raw := range []string{"http://[fe80::1]:8081/a%zz", "http://nexus:8081/[a%zz", "http://[fe80::1%25]:8081"} {
		if _, _, _, _, err := Normalise(raw); err == nil || strings.Contains(err.Error(), "%25ZONE") {
			t.Errorf("%s: %v, want refused without the zone hint", raw, err)
		}
	}
}
