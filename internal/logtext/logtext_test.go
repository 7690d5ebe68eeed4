package logtext

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// A long path or method is logged cut, with its length, so that one
// request's line stays whole in log pipelines that split long lines; a
// multi-byte character is never cut in two.
func TestBoundCut(t *testing.T) {
	long := "/v2/" + strings.Repeat("é", 20000) + "/manifests/x"
	got := Bound(long)
	if len(got) > Max+32 || !strings.HasSuffix(got, "... ("+strconv.Itoa(len(long))+" bytes)") {
		t.Fatalf("cut to %d bytes: ...%q", len(got), got[max(0, len(got)-40):])
	}
	if !utf8.ValidString(got) {
		t.Fatal("the cut split a character")
	}
	for _, p := range []string{"", "/v2/", "/v2/app/manifests/sha256:" + strings.Repeat("a", 64), strings.Repeat("x", Max)} {
		if Bound(p) != p {
			t.Errorf("a path of %d bytes was changed", len(p))
		}
	}
}
