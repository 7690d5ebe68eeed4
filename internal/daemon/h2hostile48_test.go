package daemon_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// countingNexus stands between nexmux and the fixture and counts the
// requests whose path holds "/hold/" that Nexus is serving at once (Jetty
// threads), their peak and their total. Each is held for hold (or, with
// gate set, until gate is closed), or until nexmux ends it, before the
// fixture answers it.
type countingNexus struct {
	inFlight, peak, total atomic.Int64
	hold                  time.Duration
	gate                  chan struct{}
	// holdIf, when set, picks the "/hold/" requests held; the rest are
	// counted only.
	holdIf func(*http.Request) bool
	// bodies records, for each request with a body, whether its body came
	// whole (read to its end without an error), and paths its path.
	mu     sync.Mutex
	bodies []bool
	paths  []string
}

type recordedBody struct {
	io.ReadCloser
	c    *countingNexus
	path string
	done bool
}

func (b *recordedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		b.c.mu.Lock()
		b.c.bodies = append(b.c.bodies, err == io.EOF)
		b.c.paths = append(b.c.paths, b.path)
		b.c.mu.Unlock()
	}
	return n, err
}

// bodyOutcomes returns what bodies records, and empties it.
func (c *countingNexus) bodyOutcomes() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bodies
	c.bodies, c.paths = nil, nil
	return b
}

// bodyOutcomesOf returns what bodies records of the requests whose path
// ends in suffix (an upload session's id), and empties it: the Transport
// in front of the fixture may still read (and fail) an earlier request's
// body after its handler returned, so a test counting all of them could
// see the one before its own.
func (c *countingNexus) bodyOutcomesOf(suffix string) []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b []bool
	for i, p := range c.paths {
		if strings.HasSuffix(p, suffix) {
			b = append(b, c.bodies[i])
		}
	}
	c.bodies, c.paths = nil, nil
	return b
}

func (c *countingNexus) start(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = nil
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/hold/") {
			n := c.inFlight.Add(1)
			defer c.inFlight.Add(-1)
			c.total.Add(1)
			for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = &recordedBody{ReadCloser: r.Body, c: c, path: r.URL.Path}
			}
			if c.holdIf == nil || c.holdIf(r) {
				var after <-chan time.Time
				if c.gate == nil {
					after = time.After(c.hold)
				}
				select {
				case <-r.Context().Done():
					return
				case <-after:
				case <-c.gate:
				}
			}
		}
		rp.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// countedStack starts a stack whose single upstream is a countingNexus in
// front of the fixture.
func countedStack(t *testing.T, o stack.Options, hold time.Duration) (*stack.Stack, *countingNexus) {
	t.Helper()
	cn := &countingNexus{hold: hold}
	o.Upstreams = func(nexusURL string) []string { return []string{cn.start(t, nexusURL)} }
	return stack.Start(t, o), cn
}

// gatedStack is countedStack whose Nexus holds each "/hold/" request until
// the test calls release (or nexmux ends it), not for a fixed time a
// loaded machine could outrun; release is safe to call more than once
// and is called when t ends.
func gatedStack(t *testing.T, o stack.Options) (st *stack.Stack, cn *countingNexus, release func()) {
	t.Helper()
	cn = &countingNexus{gate: make(chan struct{})}
	var once sync.Once
	release = func() { once.Do(func() { close(cn.gate) }) }
	o.Upstreams = func(nexusURL string) []string {
		u := cn.start(t, nexusURL)
		t.Cleanup(release) // before the server's Close, which waits for handlers
		return []string{u}
	}
	st = stack.Start(t, o)
	t.Cleanup(release) // before the stack's shutdown, which waits for them too
	return st, cn, release
}

// h2Stream is what a hostile client saw of one stream.
type h2Stream struct {
	status   string
	header   map[string]string
	reset    http2.ErrCode
	wasReset bool
	ended    bool
	data     int
}

// h2Raw is a hand-framed HTTP/2 client: it writes whatever frames a test
// asks for, and records each stream's answer, the GOAWAY and the end of
// the connection as they come.
type h2Raw struct {
	fr     *http2.Framer
	wmu    sync.Mutex
	mu     sync.Mutex
	st     map[uint32]*h2Stream
	goaway *http2.GoAwayFrame
	gone   chan struct{} // closed when a read failed (the connection ended)
	close  func() error
	c      net.Conn
}

func dialRaw(t *testing.T, st *stack.Stack, settings ...http2.Setting) *h2Raw {
	t.Helper()
	return dialRawFor(t, st, "team-a", settings...)
}

// dialRawFor is dialRaw for the route name host (team-a-push, ...).
func dialRawFor(t *testing.T, st *stack.Stack, host string, settings ...http2.Setting) *h2Raw {
	t.Helper()
	c, fr := dialH2(t, st, host+"."+stack.Domain)
	r := &h2Raw{fr: fr, st: map[uint32]*h2Stream{}, gone: make(chan struct{}), close: c.Close, c: c}
	fr.ReadMetaHeaders = nil
	if err := fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.gone)
		readH2Frames(fr, &r.wmu, &r.mu, func(f http2.Frame, dec *hpack.Decoder) {
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				r.goaway = f
			case *http2.RSTStreamFrame:
				s := r.stream(f.StreamID)
				s.wasReset, s.reset = true, f.ErrCode
			case *http2.HeadersFrame:
				s := r.stream(f.StreamID)
				hf, _ := dec.DecodeFull(f.HeaderBlockFragment())
				for _, h := range hf {
					if h.Name == ":status" {
						s.status = h.Value
					}
					s.header[h.Name] = h.Value
				}
				s.ended = s.ended || f.StreamEnded()
			case *http2.DataFrame:
				s := r.stream(f.StreamID)
				s.data += len(f.Data())
				s.ended = s.ended || f.StreamEnded()
			}
		})
	}()
	return r
}

func (r *h2Raw) stream(id uint32) *h2Stream {
	s := r.st[id]
	if s == nil {
		s = &h2Stream{header: map[string]string{}}
		r.st[id] = s
	}
	return s
}

// get returns a copy of what stream id saw so far.
func (r *h2Raw) get(id uint32) h2Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *r.stream(id)
}

func (r *h2Raw) write(fn func(fr *http2.Framer) error) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return fn(r.fr)
}

func (r *h2Raw) headers(id uint32, fields [][2]string, end bool) error {
	return r.write(func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headerBlock(fields), EndStream: end, EndHeaders: true})
	})
}

func (r *h2Raw) ended() bool {
	select {
	case <-r.gone:
		return true
	default:
		return false
	}
}

func basicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
}

func h2Get(st *stack.Stack, host, path string) [][2]string {
	return [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host(host)}, {":path", path}, {"authorization", basicAuth()}}
}

// servedFrom reports whether a client at ip gets 200 for GET /v2/.
func servedFrom(t *testing.T, st *stack.Stack, ip string) bool {
	t.Helper()
	tr := transportFrom(st, ip)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+"/v2/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Logf("client %s: %v", ip, err)
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Rapid reset (CVE-2023-44487): a client that opens streams and resets
// each at once, as fast as it can write, over several connections. What it
// may ask of Nexus at once stays within --max-requests-per-client (a
// request that reached Nexus holds its slot until Nexus answers, by
// design: upstream_route.go), every Nexus request it started ends,
// another client is served throughout, and no goroutine outlives it.
func TestHTTP2RapidResetStaysWithinTheClientsShare(t *testing.T) {
	verifyNoLeaks(t)
	const limit = 4
	cfg := teamRoutes()
	cfg.MaxRequestsPerClient = limit
	cfg.MaxConnsPerClient = 64
	st, cn := countedStack(t, stack.Options{Config: cfg}, 2*time.Second)
	const conns, each = 4, 2000
	var wg sync.WaitGroup
	var sent atomic.Int64
	var raws []*h2Raw
	for range conns {
		raws = append(raws, dialRaw(t, st))
	}
	for _, r := range raws {
		wg.Go(func() {
			for i := range each {
				id := uint32(2*i + 1)
				err := r.write(func(fr *http2.Framer) error {
					hb := headerBlock(h2Get(st, "team-a", "/v2/hold/app/manifests/1"))
					if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndStream: true, EndHeaders: true}); err != nil {
						return err
					}
					return fr.WriteRSTStream(id, http2.ErrCodeCancel)
				})
				if err != nil {
					return
				}
				sent.Add(1)
			}
		})
	}
	served := servedFrom(t, st, "127.0.0.2")
	wg.Wait()
	if !served {
		t.Error("another client was not served during the flood")
	}
	if p := cn.peak.Load(); p > limit {
		t.Errorf("Nexus served %d of the resetting client's requests at once, want at most --max-requests-per-client %d", p, limit)
	}
	flooded := time.Now()
	waitFor(t, "every Nexus request of the flood to end", func() bool { return cn.inFlight.Load() == 0 })
	t.Logf("Nexus requests ended %v after the flood", time.Since(flooded))
	for _, r := range raws {
		r.mu.Lock()
		if r.goaway != nil {
			t.Logf("GOAWAY %v after the flood", r.goaway.ErrCode)
		}
		r.mu.Unlock()
		r.close()
	}
	t.Logf("%d streams opened and reset, %d reached Nexus, at most %d at once", sent.Load(), cn.total.Load(), cn.peak.Load())
	if !servedFrom(t, st, "127.0.0.2") || !servedFrom(t, st, "127.0.0.1") {
		t.Error("clients not served after the flood")
	}
}

// CONTINUATION flood (CVE-2024-27316): a header block that never ends.
// Frames carrying bytes past the header limit end the connection; empty
// ones carry nothing net/http counts, so on a connection that already
// served a request (--header-timeout no longer applies) only a timeout
// ends them: --idle-timeout, as for any connection with no request in
// flight. Nothing reaches Nexus either way.
func TestHTTP2ContinuationFloodEnds(t *testing.T) {
	cfg := teamRoutes()
	cfg.IdleTimeout = time.Second
	cfg.HeaderTimeout = time.Second
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	for _, tc := range []struct {
		name  string
		frag  []byte
		first bool // a completed request first
	}{
		{"empty frames on a fresh connection", nil, false},
		{"empty frames after a request", nil, true},
		{"full frames after a request", []byte(strings.Repeat("\x40\x05x-pad\x7f\x81\x7f", 1)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, st)
			id := uint32(1)
			if tc.first {
				if err := r.headers(1, h2Get(st, "team-a", "/v2/"), true); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the first answer", func() bool { return r.get(1).ended })
				id = 3
			}
			before := cn.total.Load()
			frag := tc.frag
			if frag != nil {
				// A literal field of 16 KiB, split over the frames.
				frag = make([]byte, 16<<10)
				for i := range frag {
					frag[i] = 'a'
				}
			}
			start := time.Now()
			hb := headerBlock(h2Get(st, "team-a", "/v2/hold/app/manifests/1"))
			err := r.write(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndHeaders: false})
			})
			frames := 0
			for err == nil && !r.ended() && time.Since(start) < 8*time.Second {
				err = r.write(func(fr *http2.Framer) error {
					for range 64 {
						if err := fr.WriteContinuation(id, false, frag); err != nil {
							return err
						}
						frames++
					}
					return nil
				})
			}
			select {
			case <-r.gone:
			case <-time.After(10*time.Second - time.Since(start)):
				t.Fatalf("a header block of %d CONTINUATION frames never ended after %v: the connection is still open", frames, time.Since(start))
			}
			r.mu.Lock()
			if r.goaway != nil {
				t.Logf("GOAWAY %v", r.goaway.ErrCode)
			}
			r.mu.Unlock()
			t.Logf("connection ended after %v and %d CONTINUATION frames (write error %v)", time.Since(start).Round(time.Millisecond), frames, err)
			if n := cn.total.Load() - before; n != 0 {
				t.Errorf("%d requests reached Nexus", n)
			}
		})
	}
}

// seedHeld seeds team-a-hosted's hold/app:1, one layer of size bytes, and
// returns the layer's path under team-a's name (counted by countingNexus).
func seedHeld(t *testing.T, st *stack.Stack, size int64) string {
	t.Helper()
	return "/v2/hold/app/blobs/" + seedLayer(t, st, "team-a-hosted", "hold/app", size)
}

// A client that never opens a blob stream's window (SETTINGS_INITIAL_
// WINDOW_SIZE 0) gets the answer's HEADERS and no byte more: the stream is
// reset at --send-timeout, its Nexus request ended and its
// --max-requests-per-client slot given back, and the connection goes on.
func TestHTTP2ZeroWindowBlobEndsAtSendTimeout(t *testing.T) {
	cfg := teamRoutes()
	cfg.SendTimeout = 500 * time.Millisecond
	cfg.MaxRequestsPerClient = 1
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	blob := seedHeld(t, st, 16<<20)
	r := dialRaw(t, st, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	if err := r.headers(1, h2Get(st, "team-a", blob), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the blob stream's outcome", func() bool { s := r.get(1); return s.wasReset || s.ended })
	if s := r.get(1); s.status != "200" || !s.wasReset || s.data != 0 {
		t.Errorf("blob stream with a shut window: %+v, want its 200 HEADERS, no DATA, then RST_STREAM", s)
	}
	waitFor(t, "the Nexus request to end", func() bool { return cn.inFlight.Load() == 0 })
	if err := r.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.headers(3, h2Get(st, "team-a", "/v2/"), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next request's answer", func() bool { s := r.get(3); return s.wasReset || s.ended })
	if s := r.get(3); s.status != "200" {
		t.Errorf("next request on the connection: %+v, want 200 (the cut stream's slot given back)", s)
	}
}

// Many blob streams with a window of one byte each, from one address over
// two connections: what they hold of Nexus stays within
// --max-requests-per-client, another client pulls the same blob whole
// meanwhile, and once the hostile client is gone every Nexus request ends.
func TestHTTP2TinyWindowStreamsHoldOnlyTheirShare(t *testing.T) {
	verifyNoLeaks(t)
	const limit = 4
	cfg := teamRoutes()
	cfg.SendTimeout = 3 * time.Second
	cfg.MaxRequestsPerClient = limit
	cfg.MaxConnsPerClient = 64
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	const size = 8 << 20
	blob := seedHeld(t, st, size)
	var raws []*h2Raw
	for range 2 {
		r := dialRaw(t, st, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
		raws = append(raws, r)
		for i := range 40 {
			if err := r.headers(uint32(2*i+1), h2Get(st, "team-a", blob), true); err != nil {
				t.Fatal(err)
			}
			if err := r.write(func(fr *http2.Framer) error {
				// PRIORITY frames for idle streams ahead: state net/http
				// must not keep.
				return fr.WritePriority(uint32(1001+2*i), http2.PriorityParam{StreamDep: uint32(2*i + 1), Weight: 255})
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "the hostile client's answers", func() bool {
		n := 0
		for _, r := range raws {
			for i := range 40 {
				if s := r.get(uint32(2*i + 1)); s.status != "" || s.wasReset {
					n++
				}
			}
		}
		return n >= limit
	})
	tr := transportFrom(st, "127.0.0.2")
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+blob, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("another client's pull: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || n < size || err != nil {
		t.Errorf("another client's pull: %d, %d bytes, %v; want 200 and the whole layer (over %d bytes)", resp.StatusCode, n, err, size)
	}
	if p := cn.peak.Load(); p > limit+1 {
		t.Errorf("Nexus served %d blob requests at once, want at most the hostile client's %d and the other client's one", p, limit)
	}
	count := map[string]int{}
	for _, r := range raws {
		for i := range 40 {
			s := r.get(uint32(2*i + 1))
			count[fmt.Sprintf("%s/reset=%v", s.status, s.wasReset)]++
		}
		r.close()
	}
	t.Logf("hostile streams so far: %v; peak at Nexus %d, total %d", count, cn.peak.Load(), cn.total.Load())
	waitFor(t, "every Nexus request to end", func() bool { return cn.inFlight.Load() == 0 })
}

// uploadSession opens an upload of hold/app on team-a-push and returns
// its path (Location, without scheme and host).
func uploadSession(t *testing.T, st *stack.Stack) string {
	t.Helper()
	tr := st.Transport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "https://"+st.Host("team-a-push")+"/v2/hold/app/blobs/uploads/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusAccepted || err != nil {
		t.Fatalf("upload start: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.RequestURI()
}

// blobCommitted reports whether team-a-push holds blob digest of hold/app.
func blobCommitted(t *testing.T, st *stack.Stack, digest string) bool {
	t.Helper()
	tr := st.Transport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodHead, "https://"+st.Host("team-a-push")+"/v2/hold/app/blobs/"+digest, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func sha256Digest(b []byte) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b))
}

// Uploads whose framing lies or that their client abandons never reach
// Nexus as complete bodies, and never hold Nexus past the client's end: a body shorter than
// its content-length (END_STREAM early), one longer, DATA after
// END_STREAM, a client that resets the stream or closes TCP mid-body, and one that sends GOAWAY
// mid-body and then stops (--body-timeout). A GOAWAY from the client ends
// no stream of its own: an upload that goes on after it is committed.
func TestHTTP2HostileUploadsCommitNothing(t *testing.T) {
	cfg := teamRoutes()
	cfg.BodyTimeout = time.Second
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	put := func(path, digest string, length int) [][2]string {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return [][2]string{{":method", "PUT"}, {":scheme", "https"}, {":authority", st.Host("team-a-push")}, {":path", path + sep + "digest=" + digest},
			{"authorization", basicAuth()}, {"content-type", "application/octet-stream"}, {"content-length", fmt.Sprint(length)}}
	}
	body := make([]byte, 256<<10)
	for i := range body {
		body[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name   string
		sent   []byte // the bytes sent, whose digest the PUT names
		length int    // content-length
		act    func(r *h2Raw) error
		whole  bool // Nexus gets the body as a complete one
		either bool // or, reset first, never asked
	}{
		{name: "shorter than content-length", sent: body[:1000], length: 2000, act: func(r *h2Raw) error {
			return r.write(func(fr *http2.Framer) error { return fr.WriteData(1, true, body[:1000]) })
		}},
		{name: "longer than content-length", sent: body[:1000], length: 1000, act: func(r *h2Raw) error {
			return r.write(func(fr *http2.Framer) error { return fr.WriteData(1, true, body[:2000]) })
		}},
		{name: "DATA after END_STREAM", sent: body[:1000], length: 1000, act: func(r *h2Raw) error {
			return r.write(func(fr *http2.Framer) error {
				if err := fr.WriteData(1, true, body[:1000]); err != nil {
					return err
				}
				return fr.WriteData(1, false, body[:1000])
			})
		}, whole: true, either: true},
		{name: "TCP closed mid-body", sent: body[:64<<10], length: len(body), act: func(r *h2Raw) error {
			if err := r.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, body[:64<<10]) }); err != nil {
				return err
			}
			waitFor(t, "the upload at Nexus", func() bool { return cn.inFlight.Load() == 1 })
			return r.close()
		}},
		{name: "RST_STREAM mid-body", sent: body[:64<<10], length: len(body), act: func(r *h2Raw) error {
			if err := r.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, body[:64<<10]) }); err != nil {
				return err
			}
			waitFor(t, "the upload at Nexus", func() bool { return cn.inFlight.Load() == 1 })
			return r.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(1, http2.ErrCodeCancel) })
		}},
		{name: "GOAWAY mid-body, then silence", sent: body[:64<<10], length: len(body), act: func(r *h2Raw) error {
			if err := r.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, body[:64<<10]) }); err != nil {
				return err
			}
			waitFor(t, "the upload at Nexus", func() bool { return cn.inFlight.Load() == 1 })
			return r.write(func(fr *http2.Framer) error { return fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
		}},
		{name: "GOAWAY mid-body, then the rest", sent: body, length: len(body), act: func(r *h2Raw) error {
			if err := r.write(func(fr *http2.Framer) error { return fr.WriteData(1, false, body[:64<<10]) }); err != nil {
				return err
			}
			waitFor(t, "the upload at Nexus", func() bool { return cn.inFlight.Load() == 1 })
			return r.write(func(fr *http2.Framer) error {
				if err := fr.WriteGoAway(0, http2.ErrCodeNo, nil); err != nil {
					return err
				}
				for off := 64 << 10; off < len(body); off += 16 << 10 {
					if err := fr.WriteData(1, off+16<<10 >= len(body), body[off:off+16<<10]); err != nil {
						return err
					}
				}
				return nil
			})
		}, whole: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := uploadSession(t, st)
			digest := sha256Digest(tc.sent)
			r := dialRawFor(t, st, "team-a-push")
			if err := r.headers(1, put(path, digest, tc.length), false); err != nil {
				t.Fatal(err)
			}
			if err := tc.act(r); err != nil {
				t.Logf("client's frames: %v", err)
			}
			waitFor(t, "the upload's end at Nexus", func() bool { return cn.inFlight.Load() == 0 })
			// A stream the client reset itself gets nothing more, and its
			// connection goes on.
			if !r.ended() && tc.name != "RST_STREAM mid-body" {
				waitFor(t, "the stream's outcome", func() bool { s := r.get(1); return s.wasReset || s.ended || r.ended() })
			}
			s := r.get(1)
			t.Logf("stream: status %q, reset %v (%v), connection ended %v", s.status, s.wasReset, s.reset, r.ended())
			session, _, _ := strings.Cut(path, "?")
			got := cn.bodyOutcomesOf(session[strings.LastIndex(session, "/"):])
			if tc.either && len(got) == 0 {
				return // the stream's reset came before Nexus was asked
			}
			if tc.whole != (len(got) == 1 && got[0]) {
				t.Errorf("bodies Nexus read (true: whole): %v; want whole %v (stream %+v)", got, tc.whole, s)
			}
			// The fixture stores a body cut short as far as it came, as
			// pkg/registry does: only a whole one is checked for.
			if tc.whole && !blobCommitted(t, st, digest) {
				t.Error("the whole upload was not committed")
			}
			r.close()
		})
	}
}

// Frames that break the protocol end their stream, or their connection,
// and nothing else: uppercase header names and connection-specific
// headers, a WINDOW_UPDATE that overflows a stream's or the connection's
// window, a flood of PINGs from a client that reads none of their acks.
// nexmux serves other connections throughout.
func TestHTTP2ProtocolErrorsEndOnlyTheirStreamOrConnection(t *testing.T) {
	verifyNoLeaks(t)
	cfg := teamRoutes()
	cfg.SendTimeout = 2 * time.Second
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	hold := "/v2/hold/app/manifests/1"
	for _, tc := range []struct {
		name string
		act  func(r *h2Raw) error
		want string // "stream": stream 1 reset, connection on; "conn": connection ended
	}{
		{"uppercase header name", func(r *h2Raw) error {
			return r.headers(1, append(h2Get(st, "team-a", hold), [2]string{"X-Upper", "1"}), true)
		}, "stream"},
		{"connection header", func(r *h2Raw) error {
			return r.headers(1, append(h2Get(st, "team-a", hold), [2]string{"connection", "keep-alive"}), true)
		}, "stream"},
		{"transfer-encoding header", func(r *h2Raw) error {
			return r.headers(1, append(h2Get(st, "team-a", hold), [2]string{"transfer-encoding", "chunked"}), true)
		}, "stream"},
		{"pseudo-header after a regular one", func(r *h2Raw) error {
			f := h2Get(st, "team-a", hold)
			return r.headers(1, append(f[1:], f[0]), true)
		}, "stream"},
		{"stream window overflow", func(r *h2Raw) error {
			if err := r.headers(1, [][2]string{{":method", "PUT"}, {":scheme", "https"}, {":authority", st.Host("team-a")}, {":path", hold}}, false); err != nil {
				return err
			}
			return r.write(func(fr *http2.Framer) error {
				if err := fr.WriteWindowUpdate(1, 1<<31-1); err != nil {
					return err
				}
				return fr.WriteWindowUpdate(1, 1<<31-1)
			})
		}, "stream"},
		{"stream depending on itself", func(r *h2Raw) error {
			return r.write(func(fr *http2.Framer) error {
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(h2Get(st, "team-a", hold)),
					EndStream: true, EndHeaders: true, Priority: http2.PriorityParam{StreamDep: 1, Weight: 1}})
			})
		}, "stream"},
		{"pseudo-header in trailers", func(r *h2Raw) error {
			f := [][2]string{{":method", "PUT"}, {":scheme", "https"}, {":authority", st.Host("team-a")}, {":path", hold}, {"authorization", basicAuth()}}
			if err := r.headers(1, f, false); err != nil {
				return err
			}
			return r.write(func(fr *http2.Framer) error {
				if err := fr.WriteData(1, false, []byte("x")); err != nil {
					return err
				}
				return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock([][2]string{{":path", "/v2/"}}), EndStream: true, EndHeaders: true})
			})
		}, "stream"},
		{"HEADERS on an even stream", func(r *h2Raw) error {
			return r.headers(2, h2Get(st, "team-a", hold), true)
		}, "conn"},
		{"connection window overflow", func(r *h2Raw) error {
			return r.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, 1<<31-1) })
		}, "conn"},
		{"PING flood, nothing read", func(r *h2Raw) error {
			return r.flood(func(fr *http2.Framer, i int) error { return fr.WritePing(false, [8]byte{byte(i)}) })
		}, "conn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := cn.total.Load()
			r := dialRaw(t, st)
			if strings.Contains(tc.name, "nothing read") {
				// The reader stops at its next frame while the flood runs.
				r.mu.Lock()
			}
			err := tc.act(r)
			if strings.Contains(tc.name, "nothing read") {
				r.mu.Unlock()
			}
			switch tc.want {
			case "stream":
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, "stream 1's outcome", func() bool { s := r.get(1); return s.wasReset || s.ended || r.ended() })
				if r.ended() {
					t.Fatal("the connection ended, want only the stream")
				}
				if s := r.get(1); !s.wasReset && s.status[0] != '4' {
					t.Errorf("stream 1: %+v, want a reset or a refusal", s)
				}
				// A reset that reaches a body already on its way to Nexus
				// ends only its stream too (TestHTTP2BrokenUploadEndsOnlyItsStream).
				if err := r.headers(3, h2Get(st, "team-a", "/v2/"), true); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "stream 3's answer", func() bool { s := r.get(3); return s.ended || s.wasReset || r.ended() })
				if s := r.get(3); s.status != "200" {
					t.Errorf("next request on the connection: %+v, want 200", s)
				}
			case "conn":
				select {
				case <-r.gone:
				case <-time.After(8 * time.Second):
					t.Fatalf("connection still open (client frames: %v)", err)
				}
			}
			if n := cn.total.Load() - before; n != 0 && !strings.Contains(tc.name, "window") && !strings.Contains(tc.name, "trailers") {
				t.Errorf("%d requests reached Nexus", n)
			}
			if !servedFrom(t, st, "127.0.0.2") {
				t.Error("another client not served")
			}
		})
	}
}

// flood writes frames made by one, buffered, for up to 6 s or until the
// connection ends.
func (r *h2Raw) flood(one func(fr *http2.Framer, i int) error) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	bw := bufio.NewWriterSize(r.c, 64<<10)
	fr := http2.NewFramer(bw, nil)
	_ = r.c.SetWriteDeadline(time.Now().Add(6 * time.Second))
	defer r.c.SetWriteDeadline(time.Time{})
	for i := 0; !r.ended(); i++ {
		if err := one(fr, i); err != nil {
			return err
		}
		if bw.Buffered() > 60<<10 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// Floods of frames that open no stream (SETTINGS, whose acks net/http
// folds into one; PING; WINDOW_UPDATE and PRIORITY for streams that are
// closed or idle) cost nexmux no request and no memory that grows, but
// they are not a request either: a connection that floods them ends at
// --header-timeout before its first request, and at --idle-timeout after
// its last, however fast the frames come.
func TestHTTP2ControlFrameFloodsEndAtTheTimeouts(t *testing.T) {
	verifyNoLeaks(t)
	cfg := teamRoutes()
	cfg.IdleTimeout = time.Second
	cfg.HeaderTimeout = time.Second
	st, cn := countedStack(t, stack.Options{Config: cfg}, 0)
	for _, tc := range []struct {
		name string
		one  func(fr *http2.Framer, i int) error
	}{
		{"SETTINGS", func(fr *http2.Framer, _ int) error {
			return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
		}},
		{"PING", func(fr *http2.Framer, i int) error { return fr.WritePing(false, [8]byte{byte(i)}) }},
		{"WINDOW_UPDATE on a closed stream", func(fr *http2.Framer, _ int) error { return fr.WriteWindowUpdate(1, 1) }},
		{"PRIORITY on idle streams", func(fr *http2.Framer, i int) error {
			id := uint32(101 + 2*(i%(1<<20)))
			return fr.WritePriority(id, http2.PriorityParam{StreamDep: id + 2, Weight: uint8(i)})
		}},
	} {
		for _, first := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, request first %v", tc.name, first), func(t *testing.T) {
				r := dialRaw(t, st)
				if first {
					if err := r.headers(1, h2Get(st, "team-a", "/v2/"), true); err != nil {
						t.Fatal(err)
					}
					waitFor(t, "the first answer", func() bool { return r.get(1).ended })
				} else if tc.name == "WINDOW_UPDATE on a closed stream" {
					return // stream 1 idle: a connection error, not a flood
				}
				before := cn.total.Load()
				start := time.Now()
				err := r.flood(tc.one)
				select {
				case <-r.gone:
				case <-time.After(10*time.Second - time.Since(start)):
					t.Fatalf("connection still open after %v of flood (%v)", time.Since(start), err)
				}
				t.Logf("connection ended after %v (%v)", time.Since(start).Round(time.Millisecond), err)
				if n := cn.total.Load() - before; n != 0 {
					t.Errorf("%d requests reached Nexus", n)
				}
			})
		}
	}
	if !servedFrom(t, st, "127.0.0.2") {
		t.Error("another client not served after the floods")
	}
}

// A reset stream whose request reached Nexus keeps its handler until
// Nexus answers (upstream_route.go), so resetting streams does not free
// the connection's 100: with --max-requests-per-client above that, one
// connection that opens 100 held requests, resets them and opens more
// never has more than 100 at Nexus, and net/http ends it once too many
// wait behind them.
func TestHTTP2ResetStreamsStillCountAgainstTheConnectionsStreams(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxRequestsPerClient = 1000
	// Nexus holds them until the test is done with the connection.
	st, cn, release := gatedStack(t, stack.Options{Config: cfg})
	r := dialRaw(t, st)
	id := uint32(1)
	for round := 0; round < 8 && !r.ended(); round++ {
		err := r.write(func(fr *http2.Framer) error {
			for range 100 {
				hb := headerBlock(h2Get(st, "team-a", "/v2/hold/app/manifests/1"))
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndStream: true, EndHeaders: true}); err != nil {
					return err
				}
				id += 2
			}
			return nil
		})
		if err != nil {
			break
		}
		if round == 0 {
			waitFor(t, "the first 100 at Nexus", func() bool { return cn.inFlight.Load() == 100 })
		}
		_ = r.write(func(fr *http2.Framer) error {
			for i := id - 200; i < id; i += 2 {
				if err := fr.WriteRSTStream(i, http2.ErrCodeCancel); err != nil {
					return err
				}
			}
			return nil
		})
		time.Sleep(50 * time.Millisecond)
	}
	if p := cn.peak.Load(); p > 100 {
		t.Errorf("one connection had %d requests at Nexus at once, want at most its 100 streams", p)
	}
	select {
	case <-r.gone:
	case <-time.After(15 * time.Second):
		t.Errorf("connection still open after %d streams opened and reset", (id-1)/2)
	}
	t.Logf("%d streams opened and reset, %d at Nexus at most", (id-1)/2, cn.peak.Load())
	release()
	if !servedFrom(t, st, "127.0.0.2") {
		t.Error("another client not served")
	}
}
