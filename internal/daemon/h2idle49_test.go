package daemon_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// --idle-timeout counts from the last response: an HTTP/2 client that
// keeps opening streams and resetting each before its answer is whole (at
// Nexus, after the answer's HEADERS, or an upload that never sends a
// byte) has nothing answered and nothing moving, and its connection ends
// at the idle timeout as an HTTP/1 keep-alive connection does. Each such
// stream restarted net/http's own idle timer. A client whose requests are
// answered keeps its connection however long it goes on.
func TestHTTP2ResetLoopEndsAtIdleTimeout(t *testing.T) {
	const idle = time.Second
	cfg := teamRoutes()
	cfg.IdleTimeout = idle
	// Nexus holds a manifest request a second: the test resets its
	// stream well before, however loaded the machine (an answer that came
	// first would restart the idle clock). Blobs are answered at once.
	cn := &countingNexus{hold: time.Second, holdIf: func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") }}
	st := stack.Start(t, stack.Options{Config: cfg, Upstreams: func(nexusURL string) []string { return []string{cn.start(t, nexusURL)} }})
	blob := seedHeld(t, st, 4<<20)
	// Nexus's arrivals when the last stream was opened: a stream is reset
	// once its own request is at Nexus. The in-flight count would not
	// say so: the streams before it are still held there (a second, past
	// the streams' 250 ms spacing), so it would reset them at once.
	var atOpen int64
	put := [][2]string{{":method", "PUT"}, {":scheme", "https"}, {":authority", st.Host("team-a-push")},
		{":path", "/v2/hold/app/blobs/uploads/0b7c4f5e-1111-2222-3333-444455556666?digest=sha256:00"},
		{"authorization", basicAuth()}, {"content-type", "application/octet-stream"}, {"content-length", "1000"}}
	for _, tc := range []struct {
		name string
		host string
		// open starts stream id; reset tells when to reset it (nil: never,
		// the stream is answered).
		open  func(r *h2Raw, id uint32) error
		reset func(r *h2Raw, id uint32) bool
		// overlap: stream id is reset once id+2 is open, so net/http
		// always has one (a blob whose window the client keeps shut).
		overlap bool
	}{
		{"reset while at Nexus", "team-a", func(r *h2Raw, id uint32) error {
			atOpen = cn.total.Load()
			return r.headers(id, h2Get(st, "team-a", "/v2/hold/app/manifests/1"), true)
		}, func(r *h2Raw, id uint32) bool { return cn.total.Load() > atOpen }, false},
		{"blob pull reset after its HEADERS", "team-a", func(r *h2Raw, id uint32) error {
			return r.headers(id, h2Get(st, "team-a", blob), true)
		}, func(r *h2Raw, id uint32) bool { return r.get(id).status != "" }, false},
		{"upload opened, no byte, reset", "team-a-push", func(r *h2Raw, id uint32) error {
			return r.headers(id, put, false)
		}, func(r *h2Raw, id uint32) bool { return true }, false},
		{"answered requests (kept)", "team-a", func(r *h2Raw, id uint32) error {
			return r.headers(id, h2Get(st, "team-a", "/v2/"), true)
		}, nil, false},
		{"each reset once the next is open", "team-a", func(r *h2Raw, id uint32) error {
			return r.headers(id, h2Get(st, "team-a", blob), true)
		}, func(r *h2Raw, id uint32) bool { return r.get(id).status != "" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRawFor(t, st, tc.host)
			defer r.close()
			if err := r.headers(1, h2Get(st, tc.host, "/v2/"), true); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the first answer", func() bool { return r.get(1).ended })
			if tc.overlap {
				if err := r.write(func(fr *http2.Framer) error {
					return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
				}); err != nil {
					t.Fatal(err)
				}
			}
			answered := time.Now()
			id, streams := uint32(3), 0
			// Kept 4 s; ended well before 8 s (the overlapping streams
			// take a GOAWAY, then their last reset, then net/http's
			// second before the close).
			span := 8 * idle
			if tc.reset == nil {
				span = 4 * idle
			}
			for time.Since(answered) < span && !r.ended() {
				if err := tc.open(r, id); err != nil {
					break
				}
				streams++
				if tc.reset == nil {
					waitFor(t, fmt.Sprintf("stream %d's answer", id), func() bool { s := r.get(id); return s.ended || s.wasReset || r.ended() })
					if s := r.get(id); s.status != "200" && !r.ended() {
						t.Fatalf("stream %d: %+v, want 200", id, s)
					}
				} else {
					for start := time.Now(); !tc.reset(r, id) && time.Since(start) < idle && !r.ended(); time.Sleep(5 * time.Millisecond) {
					}
					reset := id
					if tc.overlap {
						reset = id - 2
					}
					if reset == 1 {
						// stream 1 was answered
					} else if err := r.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(reset, http2.ErrCodeCancel) }); err != nil {
						break
					}
				}
				id += 2
				time.Sleep(250 * time.Millisecond)
			}
			if tc.reset == nil {
				if r.ended() {
					t.Errorf("a connection whose %d requests were answered every 250 ms ended after %v (--idle-timeout %v)", streams, time.Since(answered).Round(time.Millisecond), idle)
				}
				return
			}
			if !r.ended() {
				t.Errorf("connection still open %v after its last answer (--idle-timeout %v): %d streams opened and reset meanwhile", time.Since(answered).Round(time.Millisecond), idle, streams)
				return
			}
			t.Logf("connection ended %v after its last answer, %d streams opened and reset meanwhile", time.Since(answered).Round(time.Millisecond), streams)
		})
	}
}

// A stream in flight is never cut by the idle clock, however long it runs
// without another answer: a blob read in pieces well past --idle-timeout
// arrives whole, and a request beside it once the clock has run out is
// answered (with a GOAWAY, the one stream before the close).
func TestHTTP2IdleClockCutsNoStreamInFlight(t *testing.T) {
	const idle = time.Second
	cfg := teamRoutes()
	cfg.IdleTimeout = idle
	st, _ := countedStack(t, stack.Options{Config: cfg}, 0)
	const size = 4 << 20
	blob := seedHeld(t, st, size)
	r := dialRaw(t, st, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	defer r.close()
	if err := r.headers(1, h2Get(st, "team-a", blob), true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	asked := false
	for !r.get(1).ended && !r.ended() && time.Since(start) < 20*time.Second {
		if err := r.write(func(fr *http2.Framer) error {
			if err := fr.WriteWindowUpdate(1, 64<<10); err != nil {
				return err
			}
			return fr.WriteWindowUpdate(0, 64<<10)
		}); err != nil {
			break
		}
		if !asked && time.Since(start) > 3*idle {
			asked = true
			if err := r.headers(3, h2Get(st, "team-a", "/v2/"), true); err != nil {
				t.Fatal(err)
			}
			// Its answer's body, in the window the client keeps shut.
			if err := r.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(3, 64<<10) }); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := r.get(1)
	if s.status != "200" || !s.ended || s.wasReset || s.data < size {
		t.Errorf("blob read over %v (--idle-timeout %v): status %s, %d of over %d bytes, ended %v, reset %v (%v)", time.Since(start).Round(time.Millisecond), idle, s.status, s.data, size, s.ended, s.wasReset, s.reset)
	}
	if !asked {
		t.Fatalf("the blob came whole within %v: too fast to outlast the idle clock", 3*idle)
	}
	waitFor(t, "the request beside the blob", func() bool { s := r.get(3); return s.ended || s.wasReset || r.ended() })
	if s := r.get(3); s.status != "200" || !s.ended {
		t.Errorf("request beside the blob after the idle clock ran out: %+v, want 200", s)
	}
}
