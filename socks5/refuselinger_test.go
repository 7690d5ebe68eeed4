package socks5_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/socks5"
)

// refusals are the SOCKS refusal paths, each as the bytes a client sends
// in one go (before what it pipelines after them) and the reply it must
// read in full before the end of the stream.
var refusals = []struct {
	name  string
	users bool
	send  []byte
	reply []byte
}{
	{"bad greeting", false, []byte{4, 1, 0}, nil},
	{"no acceptable method", true, []byte{5, 1, 0}, []byte{5, 0xff}},
	{"failed login", true, append([]byte{5, 1, 2, 1, 5}, "alice\x05guess"...), []byte{5, 2, 1, 1}},
	{"refused CONNECT", false, request(1, "nowhere.example", 443), []byte{5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0}},
	{"BIND", false, request(2, "team-a.nexmux.test", 443), []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}},
	{"unknown command", false, request(9, "team-a.nexmux.test", 443), []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}},
	{"unknown address type", false, []byte{5, 1, 0, 5, 1, 0, 2, 127, 0, 0, 1, 1, 187}, []byte{5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0}},
}

// request is a greeting offering no login and a request for cmd.
func request(cmd byte, host string, port int) []byte {
	b := append([]byte{5, 1, 0, 5, cmd, 0, atypName, byte(len(host))}, host...)
	return binary.BigEndian.AppendUint16(b, uint16(port))
}

func startRefusing(t *testing.T, users bool) *stack {
	var o socks5.Options
	if users {
		o.Users = func() map[string]string { return map[string]string{"alice": "s3cret"} }
	}
	return start(t, config{opts: o})
}

// A client that pipelines more than the session reads (a TLS ClientHello
// and more, after its CONNECT) must still read a refusal whole, then a
// FIN: a socket closed with unread bytes sends a reset, which can overtake
// the reply and make the client's kernel drop it.
func TestSocksRefusalEndsWithFINNotReset(t *testing.T) {
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			st := startRefusing(t, r.users)
			c, err := net.Dial("tcp", st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := append(append([]byte{}, r.send...), bytes.Repeat([]byte{0x16}, 64<<10)...)
			go func() { _, _ = c.Write(msg) }()
			got := make([]byte, len(r.reply))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, r.reply) {
				t.Fatalf("reply %x, %v; want %x", got, err, r.reply)
			}
			if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("after the reply: %d bytes, %v; want io.EOF (a FIN, not a reset)", n, err)
			}
		})
	}
}

// The careful close is bounded: a refused client that keeps sending,
// quickly or a trickle, is closed soon after, and its session's places
// are given back.
func TestSocksRefusalLingerBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chunk int
		every time.Duration
	}{{"flood", 32 << 10, 0}, {"trickle", 8, 50 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			// Limits set, so that the places a linger holds are counted.
			st := start(t, config{maxConns: 10, opts: socks5.Options{MaxPendingPerClient: 4}})
			c, err := net.Dial("tcp", st.socksAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(request(1, "nowhere.example", 443)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			cut := make(chan error, 1)
			go func() {
				chunk := make([]byte, tc.chunk)
				for {
					if _, err := c.Write(chunk); err != nil {
						cut <- err
						return
					}
					time.Sleep(tc.every)
				}
			}()
			got, _ := io.ReadAll(c)
			if len(got) < 12 || got[3] != 2 {
				t.Errorf("read %x; want a refusal (not allowed)", got)
			}
			select {
			case err := <-cut:
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("the client's writes went on for 10s: the linger is unbounded")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the client's writes went on for 10s: the linger is unbounded")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the refused client that keeps sending was closed after %v", d)
			}
			deadline := time.Now().Add(5 * time.Second)
			for st.ingress.PendingPlaces() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d pending places still held after the linger", st.ingress.PendingPlaces())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if open, _ := st.router.Open(); open != 0 {
				t.Errorf("%d --max-conns places held after the linger", open)
			}
		})
	}
}

// A lingering refused session still counts as a session without a stream:
// a client cannot hold more sockets than MaxPendingPerClient by having
// them refused.
func TestSocksRefusalLingerCountsAsPending(t *testing.T) {
	st := start(t, config{opts: socks5.Options{MaxPendingPerClient: 1}})
	c, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// Refused, and it keeps sending (never closing): its session lingers.
	go func() {
		chunk := make([]byte, 64)
		_, err := c.Write(request(1, "nowhere.example", 443))
		for err == nil {
			_, err = c.Write(chunk)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	got := make([]byte, 12)
	if _, err := io.ReadFull(c, got); err != nil || got[3] != 2 {
		t.Fatalf("reply %x, %v; want a refusal (not allowed)", got, err)
	}
	if n := st.ingress.PendingPlaces(); n != 1 {
		t.Errorf("%d pending places while the refused session lingers, want 1", n)
	}
	// Once it is closed, the address gets its place back.
	deadline := time.Now().Add(5 * time.Second)
	for st.ingress.PendingPlaces() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d pending places still held after the linger", st.ingress.PendingPlaces())
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, ok, err := connect(t, st.socksAddr, nil, 1, "team-a.nexmux.test", 443)
	if err != nil || code != replySucceeded {
		t.Fatalf("CONNECT after the linger: reply %d, %v", code, err)
	}
	ok.Close()
}

// A client at its --max-conns-per-client that reads its refusal, closes
// and retries at once finds its place: the refused session lingers only
// while the client keeps its side open, however soon nexmux reads the
// client's FIN.
func TestSocksRetryAfterRefusalFindsItsPlace(t *testing.T) {
	st := start(t, config{opts: socks5.Options{MaxPendingPerClient: 1}})
	turnedAway := 0
	const tries = 100
	for range tries {
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(request(1, "nowhere.example", 443))
		// The whole refusal, then nexmux's FIN.
		if b, err := io.ReadAll(c); err != nil || len(b) != 12 {
			turnedAway++
		}
		c.Close()
	}
	if turnedAway != 0 {
		t.Fatalf("%d of %d tries turned away: a client that read its refusal and closed was refused when it retried at once", turnedAway, tries)
	}
}

// Behind a balancer, with IPv6 clients counted by /64, a client whose
// refused session it closed finds its place when it retries at once from
// another address of its /64, as from its own.
func TestSocksRetryAfterRefusalFindsItsPlaceInItsPrefix(t *testing.T) {
	st := start(t, config{proxyFrom: []string{"127.0.0.1/32"}, opts: socks5.Options{MaxPendingPerClient: 1, PerClientIPv6Prefix: 64}})
	turnedAway := 0
	const tries = 100
	for i := range tries {
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		hdr := fmt.Sprintf("PROXY TCP6 2001:db8:1:2::%x 2001:db8::ffff 40000 1080\r\n", i%2+1)
		_, _ = c.Write(append([]byte(hdr), request(1, "nowhere.example", 443)...))
		if b, err := io.ReadAll(c); err != nil || len(b) != 12 {
			turnedAway++
		}
		c.Close()
	}
	if turnedAway != 0 {
		t.Fatalf("%d of %d tries turned away: a client that read its refusal and closed was refused when it retried at once from its /64", turnedAway, tries)
	}
}

// A client at its limit whose refused session gives its place back by
// itself (nexmux read the client's FIN) after the accept loop found the
// client at its limit, but before it looked for places to reclaim, is not
// refused for a place already free.
func TestSocksRetryFindsThePlaceItsSessionGaveBackMeanwhile(t *testing.T) {
	st := start(t, config{opts: socks5.Options{MaxPendingPerClient: 1}})
	first, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_ = first.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = first.Write(request(1, "nowhere.example", 443))
	// The whole refusal, then nexmux's FIN: the session lingers, holding
	// the client's place, until the client closes.
	if b, err := io.ReadAll(first); err != nil || len(b) != 12 {
		t.Fatalf("refusal %x, %v; want 12 bytes, then the end", b, err)
	}
	var once sync.Once
	socks5.SetRefusedTake(t, func() {
		once.Do(func() {
			first.Close()
			for deadline := time.Now().Add(5 * time.Second); st.ingress.PendingPlaces() != 0 || st.ingress.LingeringSessions() != 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the closed client's session still holds %d places, %d lingering", st.ingress.PendingPlaces(), st.ingress.LingeringSessions())
					return
				}
			}
		})
	})
	second, err := net.Dial("tcp", st.socksAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = second.Write(request(1, "nowhere.example", 443))
	if b, err := io.ReadAll(second); err != nil || len(b) != 12 {
		t.Fatalf("retry: %x, %v; want the route's refusal (12 bytes): the client's place was free when the retry was looked at", b, err)
	}
}

// A client that reads its refusal, closes and retries at once finds its
// places even before its refused session has gone on to linger: the
// session counts as lingering (reclaimable once its client has closed)
// from before its refusal is written, as mux counts its refused
// connections, and its --max-conns place is back by then. Go's SOCKS
// client is such a client: it reads the reply, not the end of the stream.
func TestSocksRetryBeforeTheRefusedSessionLingers(t *testing.T) {
	for _, r := range refusals {
		if r.reply == nil {
			continue // nothing is written: the FIN comes from the linger
		}
		for _, lim := range []struct {
			name string
			cfg  config
		}{
			{"per client", config{opts: socks5.Options{MaxPendingPerClient: 1}}},
			{"max-conns", config{maxConns: 1}},
		} {
			t.Run(r.name+"/"+lim.name, func(t *testing.T) {
				cfg := lim.cfg
				if r.users {
					cfg.opts.Users = func() map[string]string { return map[string]string{"alice": "s3cret"} }
				}
				st := start(t, cfg)
				// The first session is held between its refusal and its
				// linger until the retry has its answer.
				var held atomic.Bool
				release := make(chan struct{})
				defer close(release)
				socks5.SetRefusalWritten(t, func() {
					if held.CompareAndSwap(false, true) {
						<-release
					}
				})
				for _, try := range []string{"first", "retry"} {
					c, err := net.Dial("tcp", st.socksAddr)
					if err != nil {
						t.Fatal(err)
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					_, _ = c.Write(r.send)
					got := make([]byte, len(r.reply))
					_, err = io.ReadFull(c, got)
					c.Close()
					if err != nil || !bytes.Equal(got, r.reply) {
						t.Fatalf("%s: reply %x, %v; want %x (refused at accept: %d socks5_pending, %d max_conns)",
							try, got, err, r.reply, st.refusedFor(socks5.ReasonPending), st.refusedFor(mux.ReasonMaxConns))
					}
				}
			})
		}
	}
}

// At the shared limit of sessions without a stream (MaxPending), as at its
// own, a client that reads its refusal, closes and retries at once is not
// refused for its own refused session, whose goroutine has not yet read
// its FIN: the accept loop reclaims the client's own lingering sessions
// whose client has closed, whichever limit it found full.
func TestSocksRetryAtTheSharedLimitFindsItsPlace(t *testing.T) {
	st := start(t, config{opts: socks5.Options{MaxPending: 1}})
	var held atomic.Bool
	release := make(chan struct{})
	defer close(release)
	socks5.SetRefusalWritten(t, func() {
		if held.CompareAndSwap(false, true) {
			<-release
		}
	})
	want := []byte{5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, try := range []string{"first", "retry"} {
		c, err := net.Dial("tcp", st.socksAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(request(1, "nowhere.example", 443))
		got := make([]byte, len(want))
		_, err = io.ReadFull(c, got)
		c.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: reply %x, %v; want %x: the client's place was reclaimable", try, got, err, want)
		}
	}
}
