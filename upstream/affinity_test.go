package upstream

import (
	"errors"
	"testing"
	"time"
)

// Without a secret file, a reload that changes the node list changes the
// derived key: tags handed out before it still verify for keyGrace (their
// uploads keep their node), new tags use the new key, and after the grace
// the old key is gone.
func TestDerivedKeyGraceAfterReload(t *testing.T) {
	clock := time.Unix(1000, 0)
	s := mustSet(t, "http://a:1", "http://b:1")
	s.now = func() time.Time { return clock }
	a := s.Nodes()[0]
	before := s.Tag(a, "u1")

	spec, err := ParseSpec([]string{"http://a:1", "http://b:1", "http://c:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(spec); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Untag(before, "u1"); err != nil || n != a {
		t.Fatalf("a tag from before the reload: %v, %v", n, err)
	}
	after := s.Tag(a, "u1")
	if after == before {
		t.Fatal("the reload did not change the derived key")
	}
	if n, err := s.Untag(after, "u1"); err != nil || n != a {
		t.Fatalf("a new tag: %v, %v", n, err)
	}
	// A replica started with the new list alone accepts the new tags.
	fresh := mustSet(t, "http://c:1", "http://a:1", "http://b:1")
	fresh.now = s.now
	if _, err := fresh.Untag(after, "u1"); err != nil {
		t.Fatalf("fresh replica: %v", err)
	}
	if _, err := s.Untag(before, "u2"); !errors.Is(err, ErrTagTampered) {
		t.Fatalf("an old tag on another upload: %v", err)
	}

	clock = clock.Add(keyGrace + time.Second)
	if _, err := s.Untag(before, "u1"); !errors.Is(err, ErrTagTampered) {
		t.Fatalf("after the grace: %v, want tampered", err)
	}
	if _, err := s.Untag(after, "u1"); err != nil {
		t.Fatalf("the current key after the grace: %v", err)
	}

	// A secret file replaces the derived keys at once.
	s2 := mustSet(t, "http://a:1", "http://b:1")
	s2.now = s.now
	old := s2.Tag(s2.Nodes()[0], "u1")
	s2.SetSecret([]byte("0123456789abcdef0123"))
	if _, err := s2.Untag(old, "u1"); !errors.Is(err, ErrTagTampered) {
		t.Fatalf("a derived-key tag under a secret: %v", err)
	}
}

// Retag hands a follow-up's tag back while it verifies and names the node
// that answered (its key may be one the set keeps only for checking), and
// signs anew otherwise.
func TestRetagKeepsAValidTag(t *testing.T) {
	clock := time.Unix(1000, 0)
	s := mustSet(t, "http://a:1", "http://b:1", "http://c:1")
	s.now = func() time.Time { return clock }
	a, b := s.Nodes()[0], s.Nodes()[1]
	old := s.Tag(a, "u1")
	spec, err := ParseSpec([]string{"http://a:1", "http://b:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(spec); err != nil {
		t.Fatal(err)
	}
	fresh := s.Tag(a, "u1")
	for _, c := range []struct {
		what string
		n    *Node
		uuid string
		prev string
		want string
	}{
		{"old key, same node", a, "u1", old, old},
		{"no tag", a, "u1", "", fresh},
		{"another node answered", b, "u1", old, s.Tag(b, "u1")},
		{"another upload", a, "u2", old, s.Tag(a, "u2")},
		{"tampered", a, "u1", "AA" + old[2:], fresh},
	} {
		if got := s.Retag(c.n, c.uuid, c.prev); got != c.want {
			t.Errorf("%s: %q, want %q", c.what, got, c.want)
		}
	}
	clock = clock.Add(keyGrace + time.Second)
	if got := s.Retag(a, "u1", old); got != fresh {
		t.Errorf("after the grace: %q, want a tag of the current key", got)
	}
}

// The first reload after start must not write what Pick reads without the
// lock (go test -race fails here when the set's initial node list is
// shared with the field Update reassigns).
func TestPickDuringFirstReload(t *testing.T) {
	s := mustSet(t, "http://a:1", "http://b:1")
	spec, err := ParseSpec([]string{"http://a:1", "http://b:1", "http://c:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			if _, err := s.Pick(Read, "k"); err != nil && len(s.Nodes()) == 0 {
				t.Error(err)
				return
			}
		}
	}()
	if err := s.Update(spec); err != nil {
		t.Fatal(err)
	}
	<-done
	if n := len(s.Nodes()); n != 3 {
		t.Fatalf("%d nodes after the reload, want 3", n)
	}
}

// A node removed by reload is still known for keyGrace, so the uploads
// tagged for it finish there; then, once nothing is in flight on it, it is
// forgotten: no longer in the table, never asked about an upload (with a
// client's credentials), its tags absent.
func TestRemovedNodeForgottenAfterGrace(t *testing.T) {
	clock := time.Unix(1000, 0)
	s := mustSet(t, "http://a:1", "http://b:1", "http://c:1")
	s.now = func() time.Time { return clock }
	var c *Node
	for _, n := range s.Nodes() {
		if n.Host == "c:1" {
			c = n
		}
	}
	tag := s.Tag(c, "u1")
	spec, err := ParseSpec([]string{"http://a:1", "http://b:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(spec); err != nil {
		t.Fatal(err)
	}
	known := func() bool { return s.ByHost("c:1") != nil }
	asked := func() bool {
		for _, n := range s.Askable() {
			if n == c {
				return true
			}
		}
		return false
	}

	clock = clock.Add(forgetRemovedAfter - time.Second)
	s.forgetRemoved()
	if n, err := s.Untag(tag, "u1"); err != nil || n != c || !known() || !asked() {
		t.Fatalf("within the grace: tag %v %v, known %v, asked %v", n, err, known(), asked())
	}
	clock = clock.Add(2 * time.Second)
	c.inFlight.Add(1) // a transfer still running there
	s.forgetRemoved()
	if !known() {
		t.Fatal("forgotten with a request in flight")
	}
	c.inFlight.Add(-1)
	s.forgetRemoved()
	if known() || asked() {
		t.Fatalf("after the grace: known %v, asked %v", known(), asked())
	}
	for _, row := range s.Table() {
		if row.Node == "c:1" {
			t.Fatalf("still in the table: %+v", row)
		}
	}
	if _, err := s.Untag(tag, "u1"); !errors.Is(err, ErrTagAbsent) && !errors.Is(err, ErrTagTampered) {
		t.Fatalf("its tag after the grace: %v, want absent or tampered", err)
	}
}
