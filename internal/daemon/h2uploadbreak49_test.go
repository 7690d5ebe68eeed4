package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A broken upload body on one HTTP/2 stream (reset mid-body, shorter or
// longer than its content-length) is that stream's fault alone: HTTP/2
// frames each stream, so nothing about the connection is in doubt, and a
// pull in progress beside it goes on, as do later streams on the same
// connection. A GOAWAY sent the client's other requests to a new
// connection.
func TestHTTP2BrokenUploadEndsOnlyItsStream(t *testing.T) {
	cfg := teamRoutes()
	cfg.BodyTimeout = time.Second
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	const size = 2 << 20
	blob := seedHeld(t, st, size)
	body := make([]byte, 64<<10)
	put := func(path string, length int) [][2]string {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return [][2]string{{":method", "PUT"}, {":scheme", "https"}, {":authority", st.Host("team-a-push")},
			{":path", path + sep + "digest=" + sha256Digest(body[:1000])},
			{"authorization", basicAuth()}, {"content-type", "application/octet-stream"}, {"content-length", fmt.Sprint(length)}}
	}
	var pulled int64 // Nexus's requests once the pull is under way
	for _, tc := range []struct {
		name   string
		length int
		act    func(r *h2Raw) error
	}{
		{"RST_STREAM mid-body", 4 << 20, func(r *h2Raw) error {
			if err := r.write(func(fr *http2.Framer) error { return fr.WriteData(3, false, body) }); err != nil {
				return err
			}
			waitFor(t, "the upload at Nexus", func() bool { return cn.total.Load() > pulled })
			return r.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(3, http2.ErrCodeCancel) })
		}},
		{"shorter than content-length", 2000, func(r *h2Raw) error {
			return r.write(func(fr *http2.Framer) error { return fr.WriteData(3, true, body[:1000]) })
		}},
		{"longer than content-length", 1000, func(r *h2Raw) error {
			return r.write(func(fr *http2.Framer) error { return fr.WriteData(3, true, body[:2000]) })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := uploadSession(t, st)
			r := dialRawFor(t, st, "team-a-push")
			defer r.close()
			// A pull in progress: its windows (64 KiB) full, the rest
			// waiting on the client.
			if err := r.headers(1, h2Get(st, "team-a-push", blob), true); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the pull's first window", func() bool { return r.get(1).data >= 65535 })
			pulled = cn.total.Load()
			if err := r.headers(3, put(path, tc.length), false); err != nil {
				t.Fatal(err)
			}
			if err := tc.act(r); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tc.name, "RST_STREAM") {
				// Its answer's HEADERS: the pull holds the connection's window.
				waitFor(t, "the upload's answer", func() bool { s := r.get(3); return s.status != "" || s.wasReset || r.ended() })
			}
			waitFor(t, "the upload's end at Nexus", func() bool { return cn.inFlight.Load() == 0 })
			time.Sleep(100 * time.Millisecond) // a GOAWAY would follow the upload's answer
			up := r.get(3)
			for start := time.Now(); !r.get(1).ended && !r.ended() && time.Since(start) < 15*time.Second; time.Sleep(10 * time.Millisecond) {
				if err := r.write(func(fr *http2.Framer) error {
					if err := fr.WriteWindowUpdate(1, 256<<10); err != nil {
						return err
					}
					return fr.WriteWindowUpdate(0, 256<<10)
				}); err != nil {
					break
				}
			}
			if s := r.get(1); s.status != "200" || !s.ended || s.wasReset || s.data < size {
				t.Errorf("the pull beside the broken upload: status %s, %d of over %d bytes, ended %v, reset %v", s.status, s.data, size, s.ended, s.wasReset)
			}
			r.mu.Lock()
			goaway := r.goaway
			r.mu.Unlock()
			if goaway != nil {
				t.Errorf("upload stream: status %q, reset %v (%v); the connection got GOAWAY %v (last stream %d), want only the stream ended", up.status, up.wasReset, up.reset, goaway.ErrCode, goaway.LastStreamID)
			}
			if err := r.headers(5, h2Get(st, "team-a-push", "/v2/"), true); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the next request's answer", func() bool { s := r.get(5); return s.ended || s.wasReset || r.ended() })
			if s := r.get(5); s.status != "200" {
				t.Errorf("next request on the connection: %+v (connection ended %v), want 200", s, r.ended())
			}
			if got := cn.bodyOutcomes(); len(got) > 0 && got[len(got)-1] {
				t.Errorf("Nexus read the broken body whole: %v", got)
			}
		})
	}
}
