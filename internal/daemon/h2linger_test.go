package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nexmux/nexmux/fixtures/stack"
)

const lingerTestAge = 200 * time.Millisecond

// h2Closed opens an HTTP/2 connection, sends one request past
// --max-conn-age and reads until nexmux ends the connection: the response,
// GOAWAY, then close_notify. The client keeps its side open.
func h2Closed(t *testing.T, st *stack.Stack) (*tls.Conn, *http2.Framer) {
	t.Helper()
	raw, err := net.Dial("tcp", st.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return h2ClosedOn(t, st, raw)
}

// h2ClosedOn is h2Closed on raw, a connection to nexmux's TLS.
func h2ClosedOn(t *testing.T, st *stack.Stack, raw net.Conn) (*tls.Conn, *http2.Framer) {
	t.Helper()
	c := tls.Client(raw, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"h2"}})
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(lingerTestAge + 100*time.Millisecond)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host("team-a")}, {":path", "/v2/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	answered, goAway := false, false
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the response past --max-conn-age: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			goAway = true
		case *http2.HeadersFrame:
			answered = answered || f.StreamID == 1 && f.StreamEnded()
		case *http2.DataFrame:
			answered = answered || f.StreamID == 1 && f.StreamEnded()
		}
	}
	if !answered || !goAway {
		t.Fatalf("before close_notify: response %v, GOAWAY %v", answered, goAway)
	}
	return c, fr
}

func lingerStack(t *testing.T, send, idle time.Duration) *stack.Stack {
	st, _ := lingerStackLogs(t, send, idle)
	return st
}

func lingerStackLogs(t *testing.T, send, idle time.Duration) (*stack.Stack, *logBuffer) {
	cfg := teamRoutes()
	cfg.MaxConnAge, cfg.SendTimeout, cfg.IdleTimeout = lingerTestAge, send, idle
	cfg.MaxConns = 100 // nexmux_open_connections counts while it is set
	logs := &logBuffer{}
	return stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))}), logs
}

// h2Unread opens an HTTP/2 connection with a small receive buffer and
// asks, past --max-conn-age, for a 256 KiB blob it never reads: nexmux
// writes it all (into its socket's buffer: the client's window is open),
// then GOAWAY and close_notify, and closes. The client still has most of
// the response to receive, as on a slow link, and keeps its side open.
func h2Unread(t *testing.T, st *stack.Stack, logs *logBuffer) (*tls.Conn, *http2.Framer) {
	t.Helper()
	digest := seedUnread(t, st)
	raw, err := smallRcvbufDialer().Dial("tcp", st.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return h2UnreadOn(t, st, logs, raw, digest)
}

// seedUnread seeds team-b-hosted's unread:1, a 256 KiB blob, and returns
// its digest.
func seedUnread(t *testing.T, st *stack.Stack) string {
	return seedLayer(t, st, "team-b-hosted", "unread", 256<<10)
}

// seedLayer seeds repo's name:1, an image of one random layer of size
// bytes, and returns the layer's digest.
func seedLayer(t *testing.T, st *stack.Stack, repo, name string, size int64) string {
	t.Helper()
	img, err := random.Image(size, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.Seed(repo, name, "1", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	return digest.String()
}

// smallRcvbufDialer dials with a 4 KiB receive buffer.
func smallRcvbufDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(sockFD(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
}

// h2UnreadOn is h2Unread on raw, a connection to nexmux's TLS, asking
// for the blob digest seeded as team-b-hosted's unread:1.
func h2UnreadOn(t *testing.T, st *stack.Stack, logs *logBuffer, raw net.Conn, digest string) (*tls.Conn, *http2.Framer) {
	t.Helper()
	c := tls.Client(raw, &tls.Config{ServerName: "team-b.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"h2"}})
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteWindowUpdate(0, 4<<20); err != nil {
		t.Fatal(err)
	}
	time.Sleep(lingerTestAge + 100*time.Millisecond)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host("team-b")},
		{":path", "/v2/unread/blobs/" + digest},
		{"authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "msg=request", "/blobs/", "status=200")
	// net/http closes a second after the last stream.
	time.Sleep(1500 * time.Millisecond)
	return c, fr
}

func waitOpen(t *testing.T, st *stack.Stack, want float64, what string) {
	t.Helper()
	waitFor(t, what, func() bool {
		return counterValue(t, st.Daemon, "nexmux_open_connections", nil) == want
	})
}

// After an HTTP/2 connection's close_notify, nexmux keeps reading what
// the client sends (its WINDOW_UPDATEs, as it reads the last response)
// instead of answering with a reset, and holds the connection's place
// meanwhile; a client that then says nothing is let go at --send-timeout,
// not --idle-timeout.
func TestLingeringHTTP2CloseEndsAtSendTimeout(t *testing.T) {
	st, logs := lingerStackLogs(t, 2*time.Second, time.Hour)
	_, fr := h2Unread(t, st, logs)
	for i := range 3 {
		if err := fr.WriteWindowUpdate(0, 4096); err != nil {
			t.Fatalf("WINDOW_UPDATE %d after close_notify: %v (the socket was closed under the client)", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := counterValue(t, st.Daemon, "nexmux_open_connections", nil); n != 1 {
		t.Fatalf("nexmux_open_connections %v while the connection lingers, want 1", n)
	}
	start := time.Now()
	waitOpen(t, st, 0, "a silent lingering connection to close by --send-timeout (2s; --idle-timeout 1h)")
	if took := time.Since(start); took < time.Second {
		t.Errorf("a client still receiving the response was let go %v after its last byte, before --send-timeout (2s)", took)
	}
}

// A client that keeps trickling bytes after close_notify is let go at
// --idle-timeout in all.
func TestLingeringHTTP2CloseEndsAtIdleTimeout(t *testing.T) {
	st := lingerStack(t, time.Hour, 2*time.Second)
	_, fr := h2Closed(t, st)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				if fr.WritePing(false, [8]byte{}) != nil {
					return
				}
			}
		}
	}()
	waitOpen(t, st, 0, "a trickling lingering connection to close by --idle-timeout (2s)")
}

// A client that floods a lingering connection is cut instead of being
// read for as long as it sends.
func TestLingeringHTTP2CloseCutsAFlood(t *testing.T) {
	st := lingerStack(t, time.Hour, time.Hour)
	_, fr := h2Closed(t, st)
	junk := make([]byte, 16<<10)
	flooded := make(chan error, 1)
	go func() {
		for {
			if err := fr.WriteData(1, false, junk); err != nil {
				flooded <- err
				return
			}
		}
	}()
	select {
	case <-flooded:
	case <-time.After(15 * time.Second):
		t.Fatal("a client flooding a lingering connection was read for 15 s")
	}
	waitOpen(t, st, 0, "the flooded connection to close")
}

// A drain waits for lingering connections until it times out, then
// closes them.
func TestDrainClosesLingeringHTTP2AtItsEnd(t *testing.T) {
	st, logs := lingerStackLogs(t, time.Hour, time.Hour)
	h2Unread(t, st, logs)
	if took, _ := drainWithin(st, 2*time.Second); took < 1900*time.Millisecond || took > 10*time.Second {
		t.Errorf("drain took %v with a lingering connection and a 2s timeout", took)
	}
	wantCutLogged(t, logs, "drain-timeout")
	if n := counterValue(t, st.Daemon, "nexmux_open_connections", nil); n != 0 {
		t.Errorf("nexmux_open_connections %v after the drain", n)
	}
}

// A client whose kernel has acknowledged everything nexmux wrote, FIN
// included, and that then says nothing (an idle connection its library
// reads only when it reuses it, a stopped process) has the whole response:
// a drain does not wait for it to close, nor does its place stay taken
// until --send-timeout.
func TestDrainDoesNotWaitForAClientThatHasItAll(t *testing.T) {
	st := lingerStack(t, time.Hour, time.Hour)
	h2Closed(t, st)
	took, err := drainWithin(st, 20*time.Second)
	if err != nil {
		t.Errorf("drain: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("drain took %v for a client that had everything", took)
	}
	if n := counterValue(t, st.Daemon, "nexmux_open_connections", nil); n != 0 {
		t.Errorf("nexmux_open_connections %v after the drain", n)
	}
}

// A drain waits for a lingering connection only while it moves: one whose
// client neither takes a byte nor sends one (gone without a word: a
// runner's VM deleted, a laptop shut; or stopped) does not hold the drain
// until --drain-timeout.
func TestDrainDoesNotWaitForAStalledLingeringClient(t *testing.T) {
	st, logs := lingerStackLogs(t, time.Hour, time.Hour)
	h2Unread(t, st, logs)
	if took, _ := drainWithin(st, 30*time.Second); took > 15*time.Second {
		t.Errorf("drain took %v for a lingering client that moved nothing", took)
	}
	wantCutLogged(t, logs, "stalled")
	if n := counterValue(t, st.Daemon, "nexmux_open_connections", nil); n != 0 {
		t.Errorf("nexmux_open_connections %v after the drain", n)
	}
}

// wantCutLogged checks that the drain said it cut one lingering
// connection, and why: its client may have missed the end of a response.
func wantCutLogged(t *testing.T, logs *logBuffer, why string) {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "drain closed HTTP/2 connections whose clients were still reading") {
			if !strings.Contains(line, "conns=1 ") || !strings.Contains(line, "why="+why) {
				t.Errorf("drain's line: %s, want conns=1 why=%s", line, why)
			}
			return
		}
	}
	t.Errorf("the drain cut a lingering connection without a word:\n%s", logs.String())
}

// socksConnect opens a stream to host:443 through st's SOCKS5 ingress
// (no authentication): what a client with ALL_PROXY=socks5://... does.
func socksConnect(t *testing.T, st *stack.Stack, host string) net.Conn {
	t.Helper()
	return socksConnectWith(t, st, &net.Dialer{}, host)
}

// socksConnectWith is socksConnect dialing with d.
func socksConnectWith(t *testing.T, st *stack.Stack, d *net.Dialer, host string) net.Conn {
	t.Helper()
	d.Timeout = 5 * time.Second
	c, err := d.Dial("tcp", st.Daemon.Addr("socks5").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := []byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))}
	req = append(req, host...)
	req = append(req, 443>>8, 443&0xff)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	// Method choice, then the reply: VER REP RSV ATYP(1: IPv4) ADDR PORT.
	var rep [2 + 10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil || rep[1] != 0 || rep[3] != 0 || rep[5] != 1 {
		t.Fatalf("SOCKS5 CONNECT %s: % x, %v", host, rep, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// So through the SOCKS5 ingress: the stream's socket is a socket pair, and
// what the client has acknowledged is read from the SOCKS session's socket
// to it.
func TestDrainDoesNotWaitForAClientThatHasItAllOverSOCKS5(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxConnAge, cfg.SendTimeout, cfg.IdleTimeout = lingerTestAge, time.Hour, time.Hour
	cfg.Socks5Listen = "127.0.0.1:0"
	st := stack.Start(t, stack.Options{Config: cfg})
	h2ClosedOn(t, st, socksConnect(t, st, "team-a.nexmux.test"))
	took, err := drainWithin(st, 20*time.Second)
	if err != nil {
		t.Errorf("drain: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("drain took %v for a SOCKS5 client that had everything", took)
	}
}

// Nor for a stalled one through the SOCKS5 ingress: what the SOCKS
// client's socket has not had acknowledged tells that it moves nothing.
func TestDrainDoesNotWaitForAStalledLingeringClientOverSOCKS5(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxConnAge, cfg.SendTimeout, cfg.IdleTimeout = lingerTestAge, time.Hour, time.Hour
	cfg.Socks5Listen = "127.0.0.1:0"
	logs := &logBuffer{}
	st := stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	digest := seedUnread(t, st)
	h2UnreadOn(t, st, logs, socksConnectWith(t, st, smallRcvbufDialer(), "team-b.nexmux.test"), digest)
	if took, _ := drainWithin(st, 30*time.Second); took > 15*time.Second {
		t.Errorf("drain took %v for a SOCKS5 lingering client that moved nothing", took)
	}
}

// drainWithin drains st with a timeout of limit: how long it took, and
// Shutdown's error.
func drainWithin(st *stack.Stack, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	err := st.Daemon.Shutdown(ctx)
	return time.Since(start), err
}
