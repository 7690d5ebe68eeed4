package daemon_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// Empty DATA frames carry no byte of the body: an upload stream that
// sends only them, as fast as it can, still has its body stop, and is cut
// at --body-timeout like one that sends nothing; its Nexus request ends
// and Nexus never gets the body whole.
func TestHTTP2EmptyDataFramesAreNoProgress(t *testing.T) {
	const bodyTimeout = time.Second
	cfg := teamRoutes()
	cfg.BodyTimeout = bodyTimeout
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	path := uploadSession(t, st)
	body := make([]byte, 1000)
	r := dialRawFor(t, st, "team-a-push")
	defer r.close()
	put := [][2]string{{":method", "PUT"}, {":scheme", "https"}, {":authority", st.Host("team-a-push")},
		{":path", path + "&digest=" + sha256Digest(body)}, {"authorization", basicAuth()},
		{"content-type", "application/octet-stream"}, {"content-length", fmt.Sprint(len(body))}}
	if err := r.headers(1, put, false); err != nil {
		t.Fatal(err)
	}
	if err := r.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, body[:10]) }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	frames := 0
	for time.Since(start) < 6*bodyTimeout && !r.ended() {
		s := r.get(1)
		if s.wasReset || s.ended || s.status != "" {
			break
		}
		if err := r.write(func(fr *http2.Framer) error {
			for range 64 {
				if err := fr.WriteData(1, false, nil); err != nil {
					return err
				}
				frames++
			}
			return nil
		}); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s := r.get(1)
	t.Logf("after %v and %d empty DATA frames: stream %+v, connection ended %v", time.Since(start).Round(time.Millisecond), frames, s, r.ended())
	if !s.wasReset && s.status == "" && !r.ended() {
		t.Errorf("an upload sending only empty DATA frames still open after %v (--body-timeout %v)", time.Since(start).Round(time.Millisecond), bodyTimeout)
	}
	waitFor(t, "the upload's end at Nexus", func() bool { return cn.inFlight.Load() == 0 })
	if got := cn.bodyOutcomes(); len(got) > 0 && got[0] {
		t.Errorf("Nexus read the body whole: %v", got)
	}
}

// A client that changes SETTINGS_MAX_FRAME_SIZE in the middle of a blob
// download (up to the protocol's largest, then down to its smallest) gets
// every DATA frame within the size in force once it has acknowledged the
// change, and the blob whole.
func TestHTTP2MaxFrameSizeChangedMidResponse(t *testing.T) {
	st, _ := countedStack(t, stack.Options{Config: teamRoutes()}, 0)
	const size = 8 << 20
	blob := seedHeld(t, st, size)
	_, fr := dialH2(t, st, "team-a."+stack.Domain)
	fr.SetMaxReadFrameSize(1<<24 - 1) // checked here, by the setting in force
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1<<24 - 1}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteWindowUpdate(0, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(h2Get(st, "team-a", blob)), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	// Sizes asked for in turn, each once 1 MiB more has come and the last
	// change was acknowledged (net/http answers SETTINGS that come before
	// its ACK with one ACK); inForce is the one the server acknowledged.
	sizes := []uint32{1<<24 - 1, 16384, 1 << 20, 16384}
	asked, acked := 0, 0
	inForce, largest := uint32(1<<24-1), uint32(0)
	got, next := 0, 1<<20
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				acked++
				inForce = sizes[acked-1]
			} else if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("after %d bytes: %v", got, f)
		case *http2.DataFrame:
			n := uint32(len(f.Data()))
			if n > inForce {
				t.Fatalf("a DATA frame of %d bytes with SETTINGS_MAX_FRAME_SIZE %d in force", n, inForce)
			}
			largest = max(largest, n)
			got += int(n)
			if f.StreamEnded() {
				t.Logf("blob of %d bytes, frames of up to %d, %d size changes acknowledged", got, largest, acked-1)
				if got < size {
					t.Errorf("blob of %d bytes, want over %d", got, size)
				}
				return
			}
			if got >= next && asked+1 < len(sizes) && acked == asked+1 {
				asked++
				next += 1 << 20
				if err := fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: sizes[asked]}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// Many upload streams from one address over two connections, each
// trickling its body (a few bytes every 100 ms, within --body-timeout):
// Nexus serves at most --max-requests-per-client of them at once (the rest
// get 429 without reaching it), another client's push goes through
// meanwhile, and once the hostile client is gone every Nexus request ends
// without a body taken whole.
func TestHTTP2SlowUploadStreamsHoldOnlyTheirShare(t *testing.T) {
	verifyNoLeaks(t)
	const limit = 4
	cfg := teamRoutes()
	cfg.MaxRequestsPerClient = limit
	cfg.MaxConnsPerClient = 64
	cfg.BodyTimeout = 5 * time.Second
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	body := make([]byte, 1<<20)
	session := uploadSession(t, st) // before the flood takes this address's share
	var raws []*h2Raw
	type stream struct {
		r  *h2Raw
		id uint32
	}
	var streams []stream
	for range 2 {
		r := dialRawFor(t, st, "team-a-push")
		raws = append(raws, r)
		for i := range 20 {
			id := uint32(2*i + 1)
			put := [][2]string{{":method", "PUT"}, {":scheme", "https"}, {":authority", st.Host("team-a-push")},
				{":path", "/v2/hold/app/blobs/uploads/0b7c4f5e-1111-2222-3333-4444556666" + fmt.Sprintf("%02d", i) + "?digest=" + sha256Digest(body)},
				{"authorization", basicAuth()}, {"content-type", "application/octet-stream"}, {"content-length", fmt.Sprint(len(body))}}
			if err := r.headers(id, put, false); err != nil {
				t.Fatal(err)
			}
			streams = append(streams, stream{r, id})
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for _, s := range streams {
				_ = s.r.write(func(fr *http2.Framer) error { return fr.WriteData(s.id, false, body[:8]) })
			}
		}
	}()
	time.Sleep(2 * time.Second)
	pushed := pushFrom(t, st, "127.0.0.2", session)
	close(stop)
	<-done
	count := map[string]int{}
	for _, s := range streams {
		g := s.r.get(s.id)
		count[fmt.Sprintf("%s/reset=%v", g.status, g.wasReset)]++
	}
	t.Logf("hostile streams: %v; Nexus peak %d, total %d", count, cn.peak.Load(), cn.total.Load())
	if p := cn.peak.Load(); p > limit+2 {
		t.Errorf("Nexus served %d uploads at once, want at most the hostile client's %d and the other client's", p, limit)
	}
	if !pushed {
		t.Error("another client's push failed while the slow uploads ran")
	}
	for _, r := range raws {
		r.close()
	}
	waitFor(t, "every Nexus request to end", func() bool { return cn.inFlight.Load() == 0 })
	wholes := 0
	for _, whole := range cn.bodyOutcomes() {
		if whole {
			wholes++
		}
	}
	if wholes != 1 {
		t.Errorf("Nexus read %d bodies whole, want only the other client's push", wholes)
	}
}

// pushFrom finishes upload session path (uploadSession) with a small blob
// from ip, and reports whether it went through.
func pushFrom(t *testing.T, st *stack.Stack, ip, path string) bool {
	t.Helper()
	blob := []byte("another client's layer")
	tr := transportFrom(st, ip)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPut, "https://"+st.Host("team-a-push")+path+"&digest="+sha256Digest(blob), bytes.NewReader(blob))
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Logf("push from %s: %v", ip, err)
		return false
	}
	resp.Body.Close()
	t.Logf("push from %s: %s (%s)", ip, resp.Status, resp.Proto)
	return resp.StatusCode == http.StatusCreated
}

// A header block just under the 64 KiB header limit, in many CONTINUATION
// frames (small ones, or a thousand bytes each), is one request: it gets
// Jetty's 431 (what Nexus answers above its 8 KiB) as a Registry error,
// and the connection serves the next request.
func TestHTTP2HeaderBlockInManyContinuationsJustUnderTheLimit(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: teamRoutes(),
		Fixture: fixtures.Config{MaxRequestHeaderBytes: fixtures.JettyMaxRequestHeaderBytes}})
	for _, frame := range []int{16, 1000} {
		t.Run(fmt.Sprintf("%d-byte frames", frame), func(t *testing.T) {
			r := dialRaw(t, st)
			defer r.close()
			pad := make([]byte, 60<<10)
			for i := range pad {
				pad[i] = 'a' + byte(i%26)
			}
			hb := headerBlock(append(h2Get(st, "team-a", "/v2/"), [2]string{"x-pad", string(pad)}))
			start := time.Now()
			err := r.write(func(fr *http2.Framer) error {
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb[:frame], EndStream: true}); err != nil {
					return err
				}
				for off := frame; off < len(hb); off += frame {
					end := min(off+frame, len(hb))
					if err := fr.WriteContinuation(1, end == len(hb), hb[off:end]); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the answer", func() bool { s := r.get(1); return s.ended || s.wasReset || r.ended() })
			s := r.get(1)
			t.Logf("header block of %d bytes in %d-byte frames: %v later, status %q, reset %v (%v), connection ended %v; %s", len(hb), frame, time.Since(start).Round(time.Millisecond), s.status, s.wasReset, s.reset, r.ended(), s.header["content-type"])
			if s.status != "431" || s.header["content-type"] != "application/json" {
				t.Errorf("stream %+v, want Jetty's 431 as a Registry error", s)
			}
			if r.ended() {
				t.Fatal("the connection ended")
			}
			if err := r.headers(3, h2Get(st, "team-a", "/v2/"), true); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the next answer", func() bool { s := r.get(3); return s.ended || s.wasReset || r.ended() })
			if s := r.get(3); s.status != "200" {
				t.Errorf("next request: %+v, want 200", s)
			}
		})
	}
}

// An upload whose HEADERS end the stream while naming a content-length
// above 0 has a body shorter than its content-length, as one whose DATA
// ends early does (TestHTTP2HostileUploadsCommitNothing): a malformed
// request (RFC 9113 8.1.1) that never reaches Nexus as a complete, empty,
// body.
func TestHTTP2HeadersEndingTheStreamWithAContentLength(t *testing.T) {
	st, cn := countedStack(t, stack.Options{Config: teamRoutes()}, 0)
	path := uploadSession(t, st)
	r := dialRawFor(t, st, "team-a-push")
	defer r.close()
	put := [][2]string{{":method", "PUT"}, {":scheme", "https"}, {":authority", st.Host("team-a-push")},
		{":path", path + "&digest=" + sha256Digest(nil)}, {"authorization", basicAuth()},
		{"content-type", "application/octet-stream"}, {"content-length", "1000"}}
	before := cn.total.Load()
	if err := r.headers(1, put, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream's outcome", func() bool { s := r.get(1); return s.ended || s.wasReset || r.ended() })
	s := r.get(1)
	t.Logf("stream: status %q, reset %v (%v); %d requests at Nexus", s.status, s.wasReset, s.reset, cn.total.Load()-before)
	waitFor(t, "Nexus's requests to end", func() bool { return cn.inFlight.Load() == 0 })
	if cn.total.Load() != before {
		t.Errorf("the PUT reached Nexus (stream %+v), want it refused: it declared 1000 bytes and sent none", s)
	}
	if blobCommitted(t, st, sha256Digest(nil)) {
		t.Error("the empty blob was committed")
	}
}
