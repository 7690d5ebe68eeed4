package daemon_test

import (
	"strconv"
	"strings"
	"testing"
)

// One request with a path of tens of kilobytes gets an access line of about
// a kilobyte: the line names the length, not every byte.
func TestAccessLineOfLongPathIsShort(t *testing.T) {
	st, logs := logStack(t, teamRoutes())
	path := "/v2/" + strings.Repeat("a", 60000) + "/manifests/latest"
	if code := get(st, "team-a", path); code == 0 {
		t.Fatal("no answer")
	}
	line := waitLog(t, logs, "msg=request", "("+strconv.Itoa(len(path))+" bytes)")
	if len(line) > 2048 {
		t.Fatalf("access line of %d bytes", len(line))
	}
}
