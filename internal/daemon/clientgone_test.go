package daemon_test

import (
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A client that leaves after its request went to Nexus, before Nexus
// answered, never gets Nexus's status: its access line must not log that
// status as a request served. Over HTTP/2 (a stream reset, RST_STREAM
// CANCEL) nexmux knows the answer cannot reach it: 499, reason "client
// gone", nothing sent, class 4xx in nexmux_requests_total. Over HTTP/1
// its closed connection looks like a half-close, whose client still reads
// (TestHalfClosedHTTP1ClientGetsItsAnswer): the answer goes out, and the
// line says the client had closed its side.
func TestClientGoneBeforeNexusAnsweredIsNotLoggedAsServed(t *testing.T) {
	const delay = 3 * time.Second // Nexus's answer comes this long after the request
	st, logs := logStackWith(t, stack.Options{Config: teamRoutes(), Nodes: 1})
	node := st.NexusNodes[0]
	// One image a request, so each has its own path and a 200 to lose.
	for _, name := range []string{"gone-h2-1", "gone-h2-2", "gone-h2-3", "gone-h1"} {
		seedLayer(t, st, "team-b-hosted", name, 1<<10)
	}
	node.SetSlow(delay, 0)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	atNexus := func(name string) func() bool {
		return func() bool {
			for _, r := range node.Requests() {
				if r.Path == "/repository/team-b/v2/"+name+"/manifests/1" {
					return true
				}
			}
			return false
		}
	}

	t.Run("http2", func(t *testing.T) {
		for try := 1; ; try++ {
			name := "gone-h2-" + strconv.Itoa(try)
			before := counterValue(t, st.Daemon, "nexmux_requests_total", map[string]string{"method": http.MethodGet, "class": "4xx"})
			c, fr := dialH2(t, st, "team-b."+stack.Domain)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			hb := headerBlock([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host("team-b")}, {":path", "/v2/" + name + "/manifests/1"}, {"authorization", auth}})
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb, EndStream: true, EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the request at Nexus", atNexus(name))
			// The PING's answer comes after nexmux has read the reset:
			// frames are read in order.
			if err := fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
				t.Fatal(err)
			}
			if err := fr.WritePing(false, [8]byte{1}); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
					break
				}
				if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			}
			if time.Since(start) > delay/2 {
				// Too close to Nexus's answer to tell which came first.
				if try == 3 {
					t.Fatal("the reset never reached nexmux well before Nexus's answer")
				}
				continue
			}
			line := waitLogFor(t, logs, 2*delay, "msg=request", "path=/v2/"+name+"/manifests/1")
			for _, want := range []string{"status=499", "bytes_out=0", `reason="client gone`} {
				if !strings.Contains(line, want) {
					t.Errorf("stream reset before Nexus answered: %q not in the access line %s", want, line)
				}
			}
			if got := counterValue(t, st.Daemon, "nexmux_requests_total", map[string]string{"method": http.MethodGet, "class": "4xx"}) - before; got != 1 {
				t.Errorf("nexmux_requests_total{class=4xx} grew by %v, want 1", got)
			}
			return
		}
	})

	t.Run("http1", func(t *testing.T) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
			&tls.Config{ServerName: "team-b." + stack.Domain, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /v2/gone-h1/manifests/1 HTTP/1.1\r\nHost: "+st.Host("team-b")+"\r\nAuthorization: "+auth+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the request at Nexus", atNexus("gone-h1"))
		c.Close()
		line := waitLogFor(t, logs, 2*delay, "msg=request", "path=/v2/gone-h1/manifests/1")
		if !strings.Contains(line, "reason=") {
			t.Errorf("client that closed its connection before Nexus answered logged as served: %s", line)
		}
	})
}

// waitLogFor is waitLog with a limit of its own.
func waitLogFor(t *testing.T, logs *logBuffer, limit time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if ls := logLines(logs, parts...); len(ls) > 0 {
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v", parts, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
