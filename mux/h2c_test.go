package mux_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/nexmux/nexmux/mux"
)

// An HTTP/2 client with prior knowledge (h2c: curl --http2-prior-knowledge,
// a Go client with unencrypted HTTP/2) on a plain-HTTP port route is told
// to use HTTP/1.1 in HTTP/2's own terms: an empty SETTINGS, then GOAWAY
// HTTP_1_1_REQUIRED, then a clean close. It got net/http's HTTP/1 answer,
// which it cannot parse, and a reset under the frames it had sent after
// the preface. HTTP/1.1 on the port is served as before.
func TestH2CPriorKnowledgeOnAPlainPortRouteGetsHTTP11Required(t *testing.T) {
	// Far longer than the refusal's linger: "no request" tells the two apart.
	const routingTimeout = 10 * time.Second
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, handshakeTimeout: routingTimeout})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(ln, 8082) })
	addr := ln.Addr().String()

	t.Run("frames", func(t *testing.T) {
		local, _ := h2cRefused(t, addr, http2.ErrCodeHTTP11Required)
		m.waitRefusal(t, local, "not_tls")
	})

	t.Run("net/http client", func(t *testing.T) {
		h2cClientRefused(t, addr, 5, "HTTP_1_1_REQUIRED")
	})

	// A first segment ending inside the preface (a PROXY header's segment
	// ending just past it) is read on, as TestNonTLSInShortSegmentsIsRecognised
	// does for the TLS listener.
	t.Run("preface in two segments", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetNoDelay(true)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, http2.ClientPreface[:2]); err != nil {
			t.Fatal(err)
		}
		// Long enough for nexmux to read the first piece alone.
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(c, http2.ClientPreface[2:])
		fr := http2.NewFramer(c, c)
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82, 0x86, 0x84}, EndStream: true, EndHeaders: true})
		if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FrameSettings {
			t.Fatalf("first frame %v, %v; want SETTINGS", f, err)
		}
		f, err := fr.ReadFrame()
		if ga, ok := f.(*http2.GoAwayFrame); err != nil || !ok || ga.ErrCode != http2.ErrCodeHTTP11Required {
			t.Fatalf("second frame %v, %v; want GOAWAY HTTP_1_1_REQUIRED", f, err)
		}
	})

	// A client waiting for the server's SETTINGS before its first
	// request has it at once, and the GOAWAY within the refusal's linger
	// (a second) although no request comes: not at the routing deadline.
	t.Run("no request", func(t *testing.T) {
		// Before the dial: the routing deadline, taken once nexmux has
		// accepted, ends no sooner than routingTimeout after this.
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(start.Add(2 * routingTimeout))
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(c, c)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FrameSettings {
			t.Fatalf("first frame %v, %v; want SETTINGS", f, err)
		}
		f, err := fr.ReadFrame()
		if ga, ok := f.(*http2.GoAwayFrame); err != nil || !ok || ga.ErrCode != http2.ErrCodeHTTP11Required {
			t.Fatalf("second frame %v, %v; want GOAWAY HTTP_1_1_REQUIRED", f, err)
		}
		if _, err := fr.ReadFrame(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the GOAWAY: %v, want a clean close", err)
		}
		if d := time.Since(start); d >= routingTimeout {
			t.Fatalf("closed %v after the dial, want within the linger's %v, not at the routing deadline (%v)", d.Round(time.Millisecond), mux.AlertLingerTime, routingTimeout)
		}
	})

	t.Run("HTTP/1.1 still served", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Route") != ":8082" {
			t.Fatalf("HTTP/1.1: %s, route %q", resp.Status, resp.Header.Get("X-Route"))
		}
	})
}

// An HTTP/2 client with prior knowledge on a port that serves HTTPS only
// (the TLS listener, a port route with --port-tls-only) got the HTTP/1
// JSON 400, which it cannot parse: it reported an empty or broken answer.
// It reads, in HTTP/2's terms, an empty SETTINGS, then GOAWAY
// INADEQUATE_SECURITY (HTTP/1.1 in plain text is refused there too),
// saying why, then a clean close; the refusal is counted as the plain-HTTP
// one is. A plain HTTP/1 client still reads the JSON 400.
func TestH2CPriorKnowledgeWhereOnlyHTTPSIsServedGetsInadequateSecurity(t *testing.T) {
	m, where := plainHTTPPorts(t, 0)
	for _, w := range where {
		t.Run(w.name+": frames", func(t *testing.T) {
			local, ga := h2cRefused(t, w.addr, http2.ErrCodeInadequateSecurity)
			if !strings.Contains(string(ga.DebugData()), "HTTPS only") {
				t.Errorf("GOAWAY debug data %q, want it to say the port serves HTTPS only", ga.DebugData())
			}
			m.waitRefusal(t, local, "not_tls")
		})

		t.Run(w.name+": net/http h2c client", func(t *testing.T) {
			h2cClientRefused(t, w.addr, 3, "INADEQUATE_SECURITY")
		})

		t.Run(w.name+": HTTP/1 still gets the JSON 400", func(t *testing.T) {
			resp, err := http.Get("http://" + w.addr + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":"UNSUPPORTED"`) {
				t.Fatalf("HTTP/1: %s %q, want the JSON 400", resp.Status, body)
			}
		})
	}
}

// h2cRefused opens an h2c connection to addr as a client does at once
// (preface, SETTINGS, a request) and checks nexmux's refusal: an empty
// SETTINGS, GOAWAY code naming no stream, a clean close. It returns the
// client's address (for waitRefusal) and the GOAWAY.
func h2cRefused(t *testing.T, addr string, code http2.ErrCode) (string, *http2.GoAwayFrame) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// It may meet a closed connection: the frames read say what happened.
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82, 0x86, 0x84}, EndStream: true, EndHeaders: true})
	f, err := fr.ReadFrame()
	if sf, ok := f.(*http2.SettingsFrame); err != nil || !ok || sf.IsAck() {
		t.Fatalf("first frame %v, %v; want SETTINGS", f, err)
	}
	f, err = fr.ReadFrame()
	ga, ok := f.(*http2.GoAwayFrame)
	if err != nil || !ok || ga.ErrCode != code || ga.LastStreamID != 0 {
		t.Fatalf("second frame %v, %v; want GOAWAY %v, last stream 0", f, err, code)
	}
	if _, err := fr.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the GOAWAY: %v, want a clean close", err)
	}
	return c.LocalAddr().String(), ga
}

// h2cClientRefused sends n requests to addr with net/http's h2c client,
// each of which must fail naming the GOAWAY's code.
func h2cClientRefused(t *testing.T, addr string, n int, code string) {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("attempt %d: h2c request answered %s, want refused", i+1, resp.Status)
		}
		if !strings.Contains(err.Error(), code) {
			t.Fatalf("attempt %d: h2c request: %v, want a GOAWAY %s", i+1, err, code)
		}
	}
}

// The GOAWAY follows the client's first HEADERS, at once: read with the
// preface in one segment (as curl and Go send them) or after it, never
// before the client opened its stream (Go's client then reports only a
// connection "that could not be established") and never only at the end
// of the refusal's linger.
func TestH2CGoAwayFollowsTheFirstHeaders(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, handshakeTimeout: time.Minute})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.goServe(func() error { return m.srv.ServePort(ln, 8082) })
	addr := ln.Addr().String()
	headers := func(fr *http2.Framer) error {
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82, 0x86, 0x84}, EndStream: true, EndHeaders: true})
	}
	readGoAway := func(t *testing.T, fr *http2.Framer) {
		t.Helper()
		f, err := fr.ReadFrame()
		if ga, ok := f.(*http2.GoAwayFrame); err != nil || !ok || ga.ErrCode != http2.ErrCodeHTTP11Required {
			t.Fatalf("frame %v, %v; want GOAWAY HTTP_1_1_REQUIRED", f, err)
		}
	}

	t.Run("HEADERS in the preface's segment", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var first bytes.Buffer
		first.WriteString(http2.ClientPreface)
		// As curl and Go send them: SETTINGS with parameters, a
		// WINDOW_UPDATE, then the request.
		out := http2.NewFramer(&first, nil)
		if err := out.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		if err := out.WriteWindowUpdate(0, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := headers(out); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := c.Write(first.Bytes()); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(nil, c)
		if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FrameSettings {
			t.Fatalf("first frame %v, %v; want SETTINGS", f, err)
		}
		readGoAway(t, fr)
		// A GOAWAY that waited for the linger (a HEADERS read and thrown
		// away) came no sooner than AlertLingerTime after the write, the
		// linger having begun after it, however slow the machine.
		if d := time.Since(start); d >= mux.AlertLingerTime {
			t.Fatalf("GOAWAY %v after the request was sent, want at once, not at the end of the refusal's %v linger", d.Round(time.Millisecond), mux.AlertLingerTime)
		}
	})

	t.Run("HEADERS after the server's SETTINGS", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(c, c)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FrameSettings {
			t.Fatalf("first frame %v, %v; want SETTINGS", f, err)
		}
		// Nothing more until the stream is open. The linger began after
		// the preface was written, so its own GOAWAY comes no sooner than
		// AlertLingerTime after start: a byte read before then came before
		// the stream was open. The window ends well short of that (a
		// timer late under load must not let the linger's GOAWAY in); on a
		// machine so slow that it is over already, it checks nothing.
		_ = c.SetReadDeadline(start.Add(mux.AlertLingerTime / 2))
		var b [1]byte
		if n, err := c.Read(b[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			if d := time.Since(start); n != 0 && d >= mux.AlertLingerTime {
				t.Skipf("read a byte %v after the preface: the linger's end, the window was missed", d.Round(time.Millisecond))
			}
			t.Fatalf("before the client's HEADERS the server sent %d byte(s), %v; want nothing until the stream is open", n, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := headers(fr); err != nil {
			t.Fatal(err)
		}
		readGoAway(t, fr)
	})
}
