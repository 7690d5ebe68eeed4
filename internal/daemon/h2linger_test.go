package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

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
	c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
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
	cfg := teamRoutes()
	cfg.MaxConnAge, cfg.SendTimeout, cfg.IdleTimeout = lingerTestAge, send, idle
	cfg.MaxConns = 100 // nexmux_open_connections counts while it is set
	return stack.Start(t, stack.Options{Config: cfg})
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
	st := lingerStack(t, 2*time.Second, time.Hour)
	c, fr := h2Closed(t, st)
	for i := range 3 {
		if err := fr.WriteWindowUpdate(0, 4096); err != nil {
			t.Fatalf("WINDOW_UPDATE %d after close_notify: %v (the socket was closed under the client)", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := counterValue(t, st.Daemon, "nexmux_open_connections", nil); n != 1 {
		t.Fatalf("nexmux_open_connections %v while the connection lingers, want 1", n)
	}
	waitOpen(t, st, 0, "a silent lingering connection to close by --send-timeout (2s; --idle-timeout 1h)")
	_ = c
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
	st := lingerStack(t, time.Hour, time.Hour)
	h2Closed(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_ = st.Daemon.Shutdown(ctx)
	if took := time.Since(start); took < 900*time.Millisecond || took > 10*time.Second {
		t.Errorf("drain took %v with a lingering connection and a 1s timeout", took)
	}
	if n := counterValue(t, st.Daemon, "nexmux_open_connections", nil); n != 0 {
		t.Errorf("nexmux_open_connections %v after the drain", n)
	}
}
