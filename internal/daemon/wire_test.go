package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// TestRefusedRequestBodyIsNeverARequest: over HTTP/1.1 the body of a
// request nexmux refuses is read past, never parsed as a request of its
// own, whatever it holds. The refusal goes out before the body is read
// (a client that stalls must not wait for it), so it closes the
// connection, and the request pipelined after the body is not served. A
// client that asked for "100 Continue" and sent its body anyway gets its
// refusal and the close too. Over HTTP/1.0 with keep-alive, a refusal of a
// bodiless request keeps the connection like an answer.
func TestRefusedRequestBodyIsNeverARequest(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	hostA := st.Host("team-a")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	smuggled := "GET /service/rest/v1/status HTTP/1.1\r\nHost: " + hostA + "\r\n\r\n"
	next := "GET /v2/ HTTP/1.1\r\nHost: " + hostA + "\r\nAuthorization: " + auth + "\r\n\r\n"
	refused := "POST /service/rest/v1/script HTTP/1.1\r\nHost: " + hostA + "\r\n"
	cases := []struct {
		name   string
		raw    string
		want   []int
		served bool // the pipelined GET /v2/ reaches Nexus
	}{
		{"Content-Length body holding a request",
			refused + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(smuggled)) + smuggled + next, []int{404}, false},
		{"chunked body holding a request",
			refused + "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n", len(smuggled)) + smuggled + "\r\n0\r\n\r\n" + next, []int{404}, false},
		{"body sent without waiting for 100 Continue",
			refused + "Expect: 100-continue\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(smuggled)) + smuggled + next, []int{404}, false},
		{"HTTP/1.0 keep-alive, refused then served",
			"GET /service/rest/v1/status HTTP/1.0\r\nHost: " + hostA + "\r\nConnection: keep-alive\r\n\r\n" +
				"GET /v2/ HTTP/1.0\r\nHost: " + hostA + "\r\nConnection: keep-alive\r\nAuthorization: " + auth + "\r\n\r\n", []int{404, 200}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st.Nexus.ResetRequests()
			n := len(tc.want)
			if !tc.served {
				// One response more: its absence shows the connection
				// closed instead of serving another request.
				n++
			}
			res := rawExchange(st, "team-a.nexmux.test", []byte(tc.raw), n, http.MethodGet)
			if fmt.Sprint(res.statuses) != fmt.Sprint(tc.want) || tc.served && res.err != nil {
				t.Fatalf("statuses %v (%v), want %v", res.statuses, res.err, tc.want)
			}
			for i, b := range res.bodies {
				if res.statuses[i] >= 400 && !strings.Contains(b, `"errors"`) {
					t.Errorf("response %d: %d %q, not a Registry API error", i+1, res.statuses[i], b)
				}
			}
			log := st.Nexus.Requests()
			for _, r := range log {
				if !allowedUpstream(r) {
					t.Errorf("reached Nexus outside team-a's registry API: %s %s", r.Method, r.RawPath)
				}
			}
			if tc.served && len(log) != 1 {
				t.Errorf("%d requests reached Nexus, want the pipelined GET /v2/ alone", len(log))
			}
			if !tc.served && len(log) != 0 {
				t.Errorf("%d requests reached Nexus, want none: first %s %s", len(log), log[0].Method, log[0].RawPath)
			}
		})
	}
}

// A request nexmux refuses itself whose client announced a small body and
// stalls is answered at once through mux and TLS, not at --body-timeout
// (60 s here): net/http would read the body before the answer.
func TestRefusalOfStalledBodyAnsweredAtOnceOverTLS(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	refused := "POST /service/rest/v1/script HTTP/1.1\r\nHost: " + st.Host("team-a") + "\r\n"
	for _, body := range []string{
		"Content-Length: 100\r\n\r\nabc",
		"Transfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n",
	} {
		start := time.Now()
		res := rawExchange(st, "team-a.nexmux.test", []byte(refused+body), 1, http.MethodPost)
		if d := time.Since(start); res.err != nil || fmt.Sprint(res.statuses) != "[404]" || !strings.Contains(res.bodies[0], `"errors"`) || d > 5*time.Second {
			t.Fatalf("%q: %v %q (%v) after %v; want the JSON 404 at once", body, res.statuses, res.bodies, res.err, d.Round(time.Millisecond))
		}
	}
}

// TestRequestFramingNetHTTPRefuses: a Transfer-Encoding that is not
// chunked alone (a list, or two lines) and a Content-Length that is not
// one decimal number get net/http's status as a Registry API error, and
// never reach Nexus.
func TestRequestFramingNetHTTPRefuses(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	post := "POST /v2/app/blobs/uploads/ HTTP/1.1\r\nHost: " + st.Host("team-a") + "\r\n"
	for _, tc := range []struct {
		headers string
		want    int
	}{
		{"Transfer-Encoding: chunked, identity\r\n", 501},
		{"Transfer-Encoding: identity, chunked\r\n", 501},
		{"Transfer-Encoding: gzip, chunked\r\n", 501},
		{"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 501},
		{"Content-Length: +0\r\n", 400},
		{"Content-Length: -1\r\n", 400},
		{"Content-Length: 0, 0\r\n", 400},
		{"Content-Length: 0x0\r\n", 400},
		{"Content-Length: 0\r\nContent-Length: 00\r\n", 400},
	} {
		st.Nexus.ResetRequests()
		res := rawExchange(st, "team-a.nexmux.test", []byte(post+tc.headers+"\r\n0\r\n\r\n"), 1, http.MethodPost)
		if res.err != nil || len(res.statuses) != 1 || res.statuses[0] != tc.want || !strings.Contains(res.bodies[0], `"UNSUPPORTED"`) {
			t.Errorf("%q: %v %q (%v), want %d UNSUPPORTED", tc.headers, res.statuses, res.bodies, res.err, tc.want)
		}
		if log := st.Nexus.Requests(); len(log) != 0 {
			t.Errorf("%q reached Nexus: %s %s", tc.headers, log[0].Method, log[0].RawPath)
		}
	}
}

// TestHTTP2MalformedHeaderBlocksNeverReachNexus: header blocks HTTP/2
// forbids (a pseudo-header twice, after a regular field, or unknown; an
// upper-case name; an extended CONNECT) are refused by net/http and never
// reach Nexus, whatever path or authority they name.
func TestHTTP2MalformedHeaderBlocksNeverReachNexus(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	hostA := st.Host("team-a")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	base := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", hostA}, {":path", "/v2/"}, {"authorization", auth}}
	with := func(extra ...[2]string) [][2]string { return append(append([][2]string(nil), base...), extra...) }
	for name, fields := range map[string][][2]string{
		"second :path":                 with([2]string{":path", "/service/rest/v1/status"}),
		"second :authority":            with([2]string{":authority", st.Host("team-b")}),
		"pseudo-header after a field":  {{":method", "GET"}, {":scheme", "https"}, {"authorization", auth}, {":authority", hostA}, {":path", "/service/rest/v1/status"}},
		"unknown pseudo-header":        with([2]string{":host", st.Host("team-b")}),
		"upper-case field name":        with([2]string{"Host", st.Host("team-b")}),
		"extended CONNECT":             {{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", hostA}, {":path", "/service/rest/v1/status"}},
		"CR LF in a field value":       with([2]string{"x-a", "1\r\nHost: " + st.Host("team-b")}),
		"field name with a space":      with([2]string{"x-remote-user ", "admin"}),
		"empty :path":                  {{":method", "GET"}, {":scheme", "https"}, {":authority", hostA}, {":path", ""}},
		":scheme other than http(s)":   {{":method", "GET"}, {":scheme", "file"}, {":authority", hostA}, {":path", "/v2/"}},
		"request line in :path's tail": {{":method", "GET"}, {":scheme", "https"}, {":authority", hostA}, {":path", "/v2/ HTTP/1.1\r\nX: y"}},
	} {
		st.Nexus.ResetRequests()
		if got := h2Exchange(t, st, "team-a.nexmux.test", fields); got != "reset" && (len(got) != 3 || got[0] != '4') {
			t.Errorf("%s: %s, want a reset or a 4xx", name, got)
		}
		for _, r := range st.Nexus.Requests() {
			t.Errorf("%s: reached Nexus: %s %s (host %q)", name, r.Method, r.RawPath, r.Host)
		}
	}
}

// TestHTTP2ResetStreamsKeepTheirPerClientPlace: an HTTP/2 client that
// resets each stream as soon as Nexus got it or it was refused holds no more requests at Nexus than
// --max-requests-per-client: a Nexus thread goes on with a request whose
// client left, so its place is held until Nexus answers, and the client's
// further streams get 429 meanwhile. Once Nexus has answered, the places
// come back.
func TestHTTP2ResetStreamsKeepTheirPerClientPlace(t *testing.T) {
	// Nexus holds each request until the test lets it go (a remote
	// fetch: Jetty sees the client leave only when it writes).
	o := stack.Options{Config: confinedRoutes()}
	o.Config.MaxRequestsPerClient = 2
	st, cn, letGo := gatedStack(t, o)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	_, fr := dialH2(t, st, "team-a.nexmux.test")
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var wmu, mu sync.Mutex
	var tooMany int
	status := map[uint32]string{}
	resetByServer := map[uint32]bool{}
	go readH2Frames(fr, &wmu, &mu, func(f http2.Frame, dec *hpack.Decoder) {
		switch f := f.(type) {
		case *http2.HeadersFrame:
			hf, _ := dec.DecodeFull(f.HeaderBlockFragment())
			for _, h := range hf {
				if h.Name == ":status" {
					status[f.StreamID] = h.Value
					if h.Value == "429" {
						tooMany++
					}
				}
			}
		case *http2.RSTStreamFrame:
			resetByServer[f.StreamID] = true
		}
	})
	send := func(id uint32, path string) {
		t.Helper()
		hb := headerBlock([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host("team-a")},
			{":path", path}, {"authorization", auth}})
		wmu.Lock()
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb, EndStream: true, EndHeaders: true})
		wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	const streams = 20
	for i := range streams {
		id := uint32(2*i + 1)
		before := cn.total.Load()
		send(id, fmt.Sprintf("/v2/hold/app%d/manifests/1", i))
		// Reset once Nexus has the request or the client its answer: a
		// reset that came first would keep the request from Nexus.
		waitFor(t, "stream at Nexus or answered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return cn.total.Load() > before || status[id] != "" || resetByServer[id]
		})
		wmu.Lock()
		err := fr.WriteRSTStream(id, http2.ErrCodeCancel)
		wmu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := cn.peak.Load(); n > 2 || cn.total.Load() != 2 {
		t.Errorf("%d requests at Nexus at once (%d in all) from one client whose streams were reset, want 2 (--max-requests-per-client) held there", n, cn.total.Load())
	}
	mu.Lock()
	if tooMany == 0 {
		t.Errorf("no 429 among %d streams while 2 places were held", streams)
	}
	mu.Unlock()

	// Nexus answers the two it held: their places come back.
	letGo()
	id := uint32(2*streams + 1)
	send(id, "/v2/hold/after/manifests/1")
	waitFor(t, "a stream served once Nexus answered the held ones", func() bool {
		mu.Lock()
		got, reset := status[id], resetByServer[id]
		mu.Unlock()
		if got == "429" || reset {
			id += 2
			send(id, "/v2/hold/after/manifests/1")
		}
		return got != "" && got != "429"
	})
}

// A drain does not wait for a refused client still trickling its body:
// the linger after the refusal holds no request, and ends when the drain
// begins (as nginx's lingering close does when a worker exits), where it
// held a replica's restart for the linger's 30 s, past this drain's time.
func TestDrainEndsTheLingerAfterARefusal(t *testing.T) {
	cfg := confinedRoutes()
	cfg.BodyTimeout = time.Hour
	st := stack.Start(t, stack.Options{Config: cfg})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr, &tls.Config{
		ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(c, "POST /service/rest/v1/script HTTP/1.1\r\nHost: "+st.Host("team-a")+"\r\nContent-Length: 100000\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
	if err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("refusal: %v %v; want 404", res, err)
	}
	// Trickle on, as a slow client still sending its body does.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = st.Daemon.Shutdown(ctx)
	if ctx.Err() != nil {
		t.Error("the drain ran out its time with only a refused client's linger open; want the linger ended at the drain's start")
	}
}

// A client that writes its whole body before it reads the answer (Apache
// HttpClient's classic API, which Jib and the Maven and Gradle plugins
// use) gets nexmux's refusal of a PATCH of a layer bigger than the socket
// buffers, not a reset: the linger after the refusal reads the rest of the
// body (here 40 MiB, more than loopback's buffers hold) before the close.
// It read 256 KiB, and the client's write failed with "connection reset
// by peer" (such a client then never reads the answer; Go's transport,
// which reads while it writes, got it either way).
func TestRefusalOfALargeBodyReachesAClientThatWritesFirst(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	const size = 40 << 20
	piece := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	for _, framing := range []string{"Content-Length", "chunked"} {
		t.Run(framing, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr, &tls.Config{
				ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			head := "PATCH /service/rest/v1/script HTTP/1.1\r\nHost: " + st.Host("team-a") + "\r\n"
			chunk := piece
			if framing == "chunked" {
				head += "Transfer-Encoding: chunked\r\n\r\n"
				chunk = append(append([]byte(fmt.Sprintf("%x\r\n", len(piece))), piece...), "\r\n"...)
			} else {
				head += fmt.Sprintf("Content-Length: %d\r\n\r\n", size)
			}
			// Written whole before anything is read, as such a client does.
			_, err = io.WriteString(c, head)
			for sent := 0; sent < size && err == nil; sent += len(piece) {
				_, err = c.Write(chunk)
			}
			if err == nil && framing == "chunked" {
				_, err = io.WriteString(c, "0\r\n\r\n")
			}
			if err != nil {
				t.Fatalf("writing the body: %v; want it taken whole, so that the client reads the refusal", err)
			}
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, &http.Request{Method: http.MethodPatch})
			if err != nil {
				t.Fatalf("no answer: %v; want the JSON 404", err)
			}
			b, err := io.ReadAll(res.Body)
			if err != nil || res.StatusCode != http.StatusNotFound || !strings.Contains(string(b), `"errors"`) || !res.Close {
				t.Fatalf("%s %q (%v), close %v; want the JSON 404 whole, with Connection: close", res.Status, b, err, res.Close)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the answer: %v; want the connection closed cleanly (EOF)", err)
			}
		})
	}
}
