package upstream

import (
	"slices"
	"testing"
)

// A context path is compared after RFC 3986's normalisation (6.2.2.1 and
// 6.2.2.2): percent-encoded unreserved characters decoded, the hex of the
// other escapes upper-cased. "/%6Eexus" is "/nexus": the nodes of one
// cluster written either way are one context path, a node has one id
// however its URL spells the path (drain-upstream and reloads name it
// either way), and requests carry the one form.
func TestContextPathComparedNormalised(t *testing.T) {
	for _, c := range []struct {
		urls    []string
		ctx     string
		firstID string
	}{
		{[]string{"http://a:8081/%6Eexus", "http://b:8081/nexus"}, "/nexus", "http://a:8081/nexus"},
		{[]string{"http://a:8081/nexus", "http://b:8081/%6e%65%78%75%73/"}, "/nexus", "http://a:8081/nexus"},
		{[]string{"http://a:8081/%7Enexus", "http://b:8081/~nexus"}, "/~nexus", "http://a:8081/~nexus"},
		{[]string{"http://a:8081/n%c3%a9xus", "http://b:8081/n%C3%A9xus"}, "/n%C3%A9xus", "http://a:8081/n%C3%A9xus"},
		{[]string{"http://a:8081/tools/%4Eexus-%5F1", "http://b:8081/tools/Nexus-_1"}, "/tools/Nexus-_1", "http://a:8081/tools/Nexus-_1"},
	} {
		spec, err := ParseSpec(c.urls, []string{c.urls[1]})
		if err != nil {
			t.Errorf("%v: %v; want one context path", c.urls, err)
			continue
		}
		if spec.CtxPath != c.ctx || spec.IDs[0] != c.firstID {
			t.Errorf("%v: context path %q, ids %v; want %q, first id %q", c.urls, spec.CtxPath, spec.IDs, c.ctx, c.firstID)
		}
		// The same node named in the other spelling is the same node.
		alias, err := ParseSpec([]string{c.urls[0], c.urls[1]}, []string{"http://b:8081" + c.ctx})
		if err != nil || !slices.Equal(alias.Drain, spec.Drain) {
			t.Errorf("%v: drained as http://b:8081%s: %v, %v; want %v", c.urls, c.ctx, alias, err, spec.Drain)
		}
		// A reload spelling it otherwise changes nothing.
		s := NewSet(spec, quiet())
		re, err := ParseSpec([]string{c.urls[1], c.urls[0]}, nil)
		if err == nil {
			err = s.CheckUpdate(re)
		}
		if err != nil {
			t.Errorf("%v: reload in the other order: %v", c.urls, err)
		}
	}
	// Still refused: paths that differ once normalised.
	for _, urls := range [][]string{
		{"http://a:8081/nexus", "http://b:8081/Nexus"},
		{"http://a:8081/nexus", "http://b:8081/nexus2"},
		{"http://a:8081/n%C3%A9xus", "http://b:8081/n%C3%A8xus"},
	} {
		if _, err := ParseSpec(urls, nil); err == nil {
			t.Errorf("%v: taken as one context path", urls)
		}
	}
}
