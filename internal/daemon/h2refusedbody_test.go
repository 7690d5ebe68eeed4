package daemon_test

import (
	"encoding/base64"
	"fmt"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// refusedUploadConn is an HTTP/2 connection whose client keeps every
// stream's window shut and uploads on stream 1. It records stream 1's
// :status, the connection-level window credit the server gives back, and
// PING acks (the server has handled every frame sent before the PING).
type refusedUploadConn struct {
	fr      *http2.Framer
	wmu     sync.Mutex // the framer's writes
	mu      sync.Mutex
	status  string
	credit  int64
	pingAck chan struct{}
}

func dialRefusedUpload(t *testing.T, st *stack.Stack) *refusedUploadConn {
	t.Helper()
	_, fr := dialH2(t, st, "team-a.nexmux.test")
	u := &refusedUploadConn{fr: fr, pingAck: make(chan struct{}, 1)}
	u.write(t, func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	})
	go u.read()
	return u
}

// write sends frames under the write lock (read acks SETTINGS meanwhile).
func (u *refusedUploadConn) write(t *testing.T, fn func(fr *http2.Framer) error) {
	t.Helper()
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if err := fn(u.fr); err != nil {
		t.Fatal(err)
	}
}

func (u *refusedUploadConn) read() {
	readH2Frames(u.fr, &u.wmu, &u.mu, func(f http2.Frame, dec *hpack.Decoder) {
		switch f := f.(type) {
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				u.credit += int64(f.Increment)
			}
		case *http2.HeadersFrame:
			hf, _ := dec.DecodeFull(f.HeaderBlockFragment())
			for _, h := range hf {
				if h.Name == ":status" && f.StreamID == 1 {
					u.status = h.Value
				}
			}
		case *http2.PingFrame:
			if f.IsAck() {
				u.pingAck <- struct{}{}
			}
		}
	})
}

func (u *refusedUploadConn) state() (string, int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.status, u.credit
}

// A request refused with 429 over HTTP/2 whose client never takes the
// answer (its window kept shut) waits until --send-timeout for it to go
// out; --max-requests-per-client as many such refusals per address are
// kept (TestHTTP2UndeliveredAnswersCountPerClient). Its upload is not
// needed any more: what the client sends on is dropped at once (net/http
// gives the connection's window credit back for it), not kept in the
// stream's buffer, up to 1 MiB a connection, beside the documented 1 MiB
// of each request in flight.
func TestHTTP2RefusedUploadHoldsNoBody(t *testing.T) {
	const limit = 4
	// The address's requests in flight: limit answers, none delivered.
	st := heldAnswersStack(t, limit)

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	chunk := make([]byte, 64<<10)
	for i := range limit {
		u := dialRefusedUpload(t, st)
		hb := headerBlock([][2]string{{":method", "PATCH"}, {":scheme", "https"}, {":authority", st.Host("team-a")},
			{":path", "/v2/app/blobs/uploads/u1"}, {"authorization", auth}, {"content-length", fmt.Sprint(1 << 20)}})
		u.write(t, func(fr *http2.Framer) error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb, EndHeaders: true})
		})
		waitFor(t, "the upload's answer", func() bool { s, _ := u.state(); return s != "" })
		status, before := u.state()
		if status != "429" {
			t.Fatalf("upload %d while %d answers are undelivered: %s, want 429", i, limit, status)
		}
		// The upload goes on after its refusal, within the stream's window.
		u.write(t, func(fr *http2.Framer) error {
			if err := fr.WriteData(1, false, chunk); err != nil {
				return err
			}
			return fr.WritePing(false, [8]byte{1})
		})
		waitFor(t, "the PING's ack", func() bool {
			select {
			case <-u.pingAck:
				return true
			default:
				return false
			}
		})
		if _, after := u.state(); after-before < int64(len(chunk)) {
			t.Fatalf("upload %d: %d of the %d bytes sent after its 429 were dropped (connection window given back); the rest is held in the stream's buffer while the refusal waits to be taken",
				i, after-before, len(chunk))
		}
	}
}
