package mux

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/pires/go-proxyproto"
)

// FuzzV1Pending: AwaitProxyLine stops waiting only when more bytes cannot
// change go-proxyproto's verdict. For any stream b and any prefix p of it
// on which the wait ends, the parser reading p in one read accepts it
// exactly when it accepts b, with the same header; and it never waits on
// a prefix of a line the parser accepts once that line is whole.
func FuzzV1Pending(f *testing.F) {
	for _, s := range []string{
		"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n",
		"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\nhello",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		"PROXY TCP4 1.2.3.4\r 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXYX TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\x00\r\n",
	} {
		f.Add([]byte(s))
	}
	parse := func(b []byte) (*proxyproto.Header, error) {
		return proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(b), 256))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 256 || !bytes.HasPrefix(b, []byte("PROXY")) {
			// Beyond go-proxyproto's one read; or not its v1 path, whose
			// reads (v2's, the signature's) wait for bytes themselves.
			return
		}
		whole, werr := parse(b)
		for i := 1; i <= len(b); i++ {
			p := b[:i]
			if v1Pending(p) {
				continue
			}
			h, err := parse(p)
			if (err == nil) != (werr == nil) || err == nil && !h.EqualsTo(whole) {
				t.Fatalf("the wait ends at %q: header %v, %v; the whole %q gives %v, %v", p, h, err, b, whole, werr)
			}
			return
		}
		// The wait would run on past b: b must not hold a whole line
		// the parser accepts.
		if werr == nil {
			t.Fatalf("%q holds a whole v1 line, but the wait goes on", b)
		}
	})
}
