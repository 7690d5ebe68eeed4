package l7

import (
	"net/http"
	"testing"
)

// A URL Nexus hands back is read as the clients that follow it read it.
// Browsers and other WHATWG URL parsers (JavaScript's fetch) take '\' for
// '/' before the query, drop tabs and newlines anywhere and blanks at the
// ends, and read "http:" followed by any slashes as the start of an
// authority: "/\node:8081/..." leads to the node. Go reads a host's
// %XX escapes and a port's leading zeros; a node's IP address has more
// spellings than one (IPv4-mapped IPv6, IPv6 zeros, an IPv4 address as
// one number or in hex). Each is Nexus, on its own host and port, and
// goes to the public name, as its plain spelling does.
func TestRewriteReadsURLsAsClientsDo(t *testing.T) {
	for _, c := range []struct {
		in, want string
		blob     bool
	}{
		{"/\\nexus:8081/service/rest/v1/x", pubBase + "/service/rest/v1/x", false},
		{"\\\\nexus:8081/repository/team-a/v2/x", pubBase + "/v2/x", false},
		{"/\t/nexus:8081/service/rest", pubBase + "/service/rest", false},
		{"\t//nexus:8081/service/rest", pubBase + "/service/rest", false},
		{"/\\elsewhere.example.com/x", "-", false},
		{"http:\\\\nexus:8081/service/rest", pubBase + "/service/rest", false},
		{"http:\\\\nexus:8081/x", pubBase + "/x", true},
		{"http:/nexus:8081/x", pubBase + "/x", true},
		{"https:///nexus:8081/x", pubBase + "/x", true},
		{"http://nexu%73:8081/x", pubBase + "/x", true},
		{"http://nexus:08081/x", pubBase + "/x", true},
		{"/v2/x?a=\\b", pubBase + "/v2/x?a=\\b", false},
	} {
		got, ok := testURLs("").rewrite(c.in, c.blob)
		if !ok {
			got = "-"
		}
		if got != c.want {
			t.Errorf("rewrite(%q, blob redirect %v) = %q, want %q", c.in, c.blob, got, c.want)
		}
	}
	ip := testURLs("")
	ip.hostnames = []string{"team-a.example.com", "127.0.0.1", "[fd00::1]"}
	ip.nodes = []string{nodeKey("127.0.0.1:8081"), nodeKey("[fd00::1]:8081")}
	for _, in := range []string{
		"http://[::ffff:127.0.0.1]:8081/x",
		"http://[::FFFF:7f00:1]:8081/x",
		"http://2130706433:8081/x",
		"http://0x7f.1:8081/x",
		"http://0177.0.0.1:8081/x",
		"http://[FD00:0:0::1]:8081/x",
		"http://[fd00:0000::0001]:8081/x",
	} {
		if got, ok := ip.rewrite(in, true); got != pubBase+"/x" || !ok {
			t.Errorf("node at 127.0.0.1:8081 and [fd00::1]:8081: rewrite(%q, redirect) = %q %v, want %q", in, got, ok, pubBase+"/x")
		}
	}
	h := http.Header{"Link": {`</\nexus:8081/service/rest/v1/x>; rel="next"`}, "Content-Location": {"/\\nexus:8081/x"}}
	testURLs("").rewriteHeaders(h, false)
	if got := h.Get("Link"); got != `<`+pubBase+`/service/rest/v1/x>; rel="next"` {
		t.Errorf("Link became %q", got)
	}
	if got := h.Get("Content-Location"); got != pubBase+"/x" {
		t.Errorf("Content-Location became %q", got)
	}
}
