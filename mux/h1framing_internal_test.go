package mux

import "testing"

// FuzzFramingSplits: however net/http's reads split the request stream,
// framing reaches the same judgement, and no input makes it panic.
func FuzzFramingSplits(f *testing.F) {
	for _, s := range []string{
		"POST /v2/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"PATCH /v2/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"PUT /v2/2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\r\n b\r\nContent-Length: 1\r\n 2\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		var whole, split framing
		whole.scan(b)
		n := int(step%64) + 1
		for i := 0; i < len(b); i += n {
			split.scan(b[i:min(i+n, len(b))])
		}
		if whole.ambiguous.Load() != split.ambiguous.Load() || whole.state != split.state || whole.remain != split.remain {
			t.Fatalf("whole: ambiguous %v state %d remain %d; in %d-byte reads: %v %d %d",
				whole.ambiguous.Load(), whole.state, whole.remain, n, split.ambiguous.Load(), split.state, split.remain)
		}
	})
}
