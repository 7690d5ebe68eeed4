package l7

import (
	"net/http"
	"testing"
	"time"
)

// BenchmarkForwardedAnswerPolicy is the connection policy's part of each
// forwarded request on a connection under --max-conn-age (the default):
// beforeForward, then the answer's WriteHeader, which checks the age again.
func BenchmarkForwardedAnswerPolicy(b *testing.B) {
	p := &Proxy{maxAge: DefaultMaxConnAge}
	ci := &ConnInfo{Opened: time.Now()}
	h := http.Header{}
	dw := &discardWriter{h: h}
	w := &batchingWriter{}
	b.ReportAllocs()
	for b.Loop() {
		dw.status = 0
		*w = batchingWriter{ResponseWriter: dw}
		p.beforeForward(ci, w)
		w.WriteHeader(http.StatusOK)
		if h.Get("Connection") != "" {
			b.Fatal("a new connection was told to close")
		}
	}
}
