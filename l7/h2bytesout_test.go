package l7

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// An HTTP/2 client that stops reading a blob (its stream's window shut at
// w bytes) and then resets the stream got w bytes of body. net/http says
// nothing of how much of the write the reset ended went out, so bytes_out
// is what the stream took in whole writes (README): at most one piece,
// h2SendQuantum, short of w, whatever --send-timeout is (with "never" a
// write was a whole 512 KiB copy), and never more than w beyond what
// net/http's stream buffer holds.
func TestH2ResetMidBodyCountsWhatWasSent(t *testing.T) {
	const size = 4 << 20
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		chunk := make([]byte, 1<<20)
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	for _, sendTO := range []time.Duration{0, -1} {
		for _, window := range []uint32{100_000, 1_000_000, 3_000_000} {
			recs := make(chan Record, 4)
			addr, _ := haProxyConfig(t, io.Discard, 0, "team-a", Config{SendTimeout: sendTO, Observe: func(_ *ConnInfo, r *http.Request, rec Record) {
				if strings.Contains(r.URL.Path, "/blobs/") {
					recs <- rec
				}
			}}, "http://"+node.addr)
			got := h2ReadThenReset(t, addr, "/v2/app/blobs/sha256:"+strings.Repeat("0", 64), window)
			select {
			case rec := <-recs:
				if rec.BytesOut <= got-h2SendQuantum || rec.BytesOut > got+h2StreamBuffer {
					t.Errorf("send timeout %v, window %d: the client got %d bytes of body before its reset, bytes_out %d, want within (%d, %d] (status %d, reason %q)", sendTO, window, got, rec.BytesOut, got-h2SendQuantum, got+h2StreamBuffer, rec.Status, rec.Reason)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("send timeout %v, window %d: no record of the reset download", sendTO, window)
			}
		}
	}
}

// h2StreamBuffer is what net/http's HTTP/2 response writer buffers before
// it hands a write to its connection (handlerChunkWriteSize).
const h2StreamBuffer = 4 << 10

// h2ReadThenReset GETs path over h2c with a stream window of window bytes
// and the connection's wide open, reads DATA until the window is used up
// (the server can send no more), resets the stream and returns the body
// bytes it received. The connection stays open until the test ends, so
// the cut is the stream's alone.
func h2ReadThenReset(t *testing.T, addr, path string, window uint32) int64 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fr := http2.NewFramer(c, c)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteWindowUpdate(0, 64<<20); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "team-a.example.com"}, {":path", path}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	var got int64
	for got < int64(window) {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d bytes of body: %v", got, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			got += int64(len(f.Data()))
			if f.StreamEnded() {
				t.Fatalf("the whole body (%d bytes) through a window of %d", got, window)
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("reset by the server after %d bytes", got)
		}
	}
	if err := fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	return got
}
