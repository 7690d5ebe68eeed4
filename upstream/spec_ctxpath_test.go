package upstream

import (
	"strings"
	"testing"
)

// A node whose scheme or context path differs is named with the node it
// differs from: the first valid one, not a first entry refused on its own
// (whose context path nothing was compared with).
func TestSpecNamesTheFirstValidNodeForAContextPath(t *testing.T) {
	_, err := ParseSpec([]string{"ftp://n0:8081", "http://n1:8081/nexus", "http://n2:8081/"}, nil)
	if err == nil {
		t.Fatal("refused nothing")
	}
	want := `upstream "http://n2:8081/": every node must have the scheme and context path of "http://n1:8081/nexus"`
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%v\nwant it to say %s", err, want)
	}
}
