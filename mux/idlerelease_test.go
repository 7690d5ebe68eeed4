package mux_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/mux"
	"github.com/nexmux/nexmux/route"
)

// get1 sends one GET on c and returns its status and body.
func get1(t *testing.T, c net.Conn, br *bufio.Reader, path string) (int, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// servedOnce has c served one GET /v2/ and returns its reader.
func servedOnce(t *testing.T, c net.Conn) *bufio.Reader {
	t.Helper()
	br := bufio.NewReader(c)
	if status, body := get1(t, c, br, "/v2/"); status != 200 {
		t.Fatalf("status %d %q", status, body)
	}
	return br
}

// readResp reads one response from br (c's reader); its body is closed.
func readResp(t *testing.T, c net.Conn, br *bufio.Reader) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// waitIdle waits until the server has parked and live connections as
// given.
func waitIdle(t *testing.T, srv *mux.Server, parked, live int) {
	t.Helper()
	eventually(t, func() (bool, string) {
		p, l := srv.IdleCounts()
		return p == parked && l == live, fmt.Sprintf("parked %d, live %d; want %d, %d", p, l, parked, live)
	})
}

// A keep-alive connection idle past --idle-release-after is parked (net/http
// lets go of it) and served again, on the same socket and TLS session, when
// the client sends its next request; many requests and parks in a row keep
// working.
func TestIdleReleaseParksAndResumes(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, idleRelease: 50 * time.Millisecond})
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			br := bufio.NewReader(c)
			var first string
			for i := range 4 {
				status, body := get1(t, c, br, "/v2/")
				if status != 200 {
					t.Fatalf("request %d: status %d %q", i, status, body)
				}
				if i == 0 {
					first = body
				} else if body != first {
					t.Fatalf("request %d after a park answered %q; the first %q", i, body, first)
				}
				waitIdle(t, m.srv, 1, 1)
			}
			c.Close()
			waitIdle(t, m.srv, 0, 0)
		})
	}
}

// Parking frees what net/http holds for each idle connection, its
// goroutine's 8 KiB stack and its 4 KiB read and write buffers: the live
// heap grows by 8 KiB less per parked connection than per held one (the
// stacks are not compared: the runtime keeps freed stacks cached as in
// use, so a second run would reuse the first's).
func TestIdleReleaseFreesMemory(t *testing.T) {
	m := startMuxWith(t, muxConfig{idleRelease: time.Hour})
	short := startMuxWith(t, muxConfig{idleRelease: 50 * time.Millisecond})
	const n = 200
	inUse := func() int64 {
		// Earlier tests' connections may still be ending: wait until the
		// goroutine count holds still.
		for last, same := -1, 0; same < 3; time.Sleep(50 * time.Millisecond) {
			if g := runtime.NumGoroutine(); g == last {
				same++
			} else {
				last, same = g, 0
			}
		}
		var ms runtime.MemStats
		for range 3 {
			runtime.GC() // sync.Pool empties over two cycles; stacks shrink in one
		}
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	open := func(m *muxServer, parked int) int64 {
		before := inUse()
		for range n {
			servedOnce(t, m.dialH1TLS(t))
		}
		waitIdle(t, m.srv, parked, n)
		return (inUse() - before) / n
	}
	held := open(m, 0)
	released := open(short, n)
	t.Logf("live heap per idle connection, client side included: held %d B, released %d B", held, released)
	if held-released < 8<<10 {
		t.Fatalf("live heap per idle connection: held %d B, released %d B; want at least 8 KiB less", held, released)
	}
}

// A request whose first bytes come slowly (fewer than net/http waits for,
// then a pause past --idle-release-after) is served whole: no byte is lost
// to a park. Were "GET" lost, the request line would start with a space and
// net/http would answer 400.
func TestIdleReleaseKeepsSlowFirstBytes(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, idleRelease: 50 * time.Millisecond})
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			br := servedOnce(t, c)
			// Within the release delay, three bytes; then a pause.
			time.Sleep(10 * time.Millisecond)
			if _, err := io.WriteString(c, "GET"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			if p, _ := m.srv.IdleCounts(); p != 0 {
				t.Fatalf("a connection with a request begun was parked")
			}
			if _, err := io.WriteString(c, " /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp := readResp(t, c, br)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: the first bytes were lost", resp.StatusCode)
			}
		})
	}
}

// The pause is on a whole request too: the client's request line arrives
// slowly after the connection was parked.
func TestIdleReleaseSlowRequestAfterPark(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, idleRelease: 50 * time.Millisecond})
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			br := servedOnce(t, c)
			waitIdle(t, m.srv, 1, 1)
			req := "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"
			for i := 0; i < len(req); i++ {
				if _, err := io.WriteString(c, req[i:i+1]); err != nil {
					t.Fatal(err)
				}
				if i < 3 {
					time.Sleep(100 * time.Millisecond)
				}
			}
			resp := readResp(t, c, br)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		})
	}
}

// A parked connection still ends at --idle-timeout, counted from the end
// of its last response (not from the release: that would be 2.5 s here);
// a client that hangs up while parked is forgotten.
func TestIdleReleaseTimeoutAndHangUp(t *testing.T) {
	const release, idle = time.Second, 1500 * time.Millisecond
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, idleRelease: release, idleTimeout: idle})
	// The hang-up's server keeps parked connections far longer: no idle
	// timeout ends one before the test sees it parked, or forgets it for
	// the client.
	hung := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, idleRelease: release, idleTimeout: time.Minute})
	hungDials := h1Dials(t, hung)
	for i, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			_, parks := m.srv.Released()
			// Before the request: the response ends, and the idle clock
			// starts, after this. So the close comes no sooner than idle
			// after it, and a clock started at the release (release after
			// the response's end, at the soonest) no sooner than
			// release+idle, however slow the machine.
			start := time.Now()
			br := servedOnce(t, c)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := br.ReadByte(); err == nil {
				t.Fatal("a byte from an idle connection")
			}
			if since := time.Since(start); since < idle || since >= release+idle {
				t.Fatalf("closed %v after the request, --idle-timeout is %v: want at least that, and less than the %v of a clock started at the release", since.Round(time.Millisecond), idle, release+idle)
			}
			// Parked before its close: the count of parks, not the half
			// second it stays parked, which a loaded machine may miss.
			if _, total := m.srv.Released(); total != parks+1 {
				t.Fatalf("%d parks before the idle close, want 1", total-parks)
			}
			waitIdle(t, m.srv, 0, 0)

			c = hungDials[i].dial(t)
			servedOnce(t, c)
			waitIdle(t, hung.srv, 1, 1)
			c.Close()
			waitIdle(t, hung.srv, 0, 0)
		})
	}
}

// Shutdown closes parked connections at once, as http.Server closes its
// idle ones: it does not wait for its deadline.
func TestIdleReleaseShutdown(t *testing.T) {
	m := startMuxWith(t, muxConfig{idleRelease: 50 * time.Millisecond})
	c := m.dialH1TLS(t)
	br := servedOnce(t, c)
	waitIdle(t, m.srv, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if since := time.Since(start); since > 5*time.Second {
		t.Fatalf("Shutdown took %v with a parked connection", since)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("a byte after shutdown")
	}
}

// A reload that removes the route closes its parked connections, as it
// closes idle ones.
func TestIdleReleaseRevoked(t *testing.T) {
	m := startMuxWith(t, muxConfig{idleRelease: 50 * time.Millisecond})
	c := m.dialH1TLS(t)
	br := servedOnce(t, c)
	waitIdle(t, m.srv, 1, 1)
	m.srv.Update(revokingState(t, m.srv))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil || !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("parked connection of a removed route: %v, want closed", err)
	}
	waitIdle(t, m.srv, 0, 0)
}

// With release disabled (a negative delay: --idle-release-after 0),
// idle connections stay with net/http, past the default delay too.
func TestIdleReleaseDisabled(t *testing.T) {
	m := startMuxWith(t, muxConfig{idleRelease: -1})
	c := m.dialH1TLS(t)
	br := servedOnce(t, c)
	time.Sleep(mux.DefaultIdleRelease + 300*time.Millisecond)
	if p, l := m.srv.IdleCounts(); p != 0 || l != 1 {
		t.Fatalf("parked %d, live %d; want 0, 1", p, l)
	}
	if _, total := m.srv.Released(); total != 0 {
		t.Fatalf("%d releases with release disabled", total)
	}
	if status, _ := get1(t, c, br, "/v2/"); status != 200 {
		t.Fatalf("status %d", status)
	}
}

func routeTable(routes ...string) (*route.Table, error) {
	return route.Build(route.Spec{Routes: routes})
}

// revokingState is srv's state with team-a's route gone (team-b's only):
// given to Update, it revokes every connection to team-a.
func revokingState(t *testing.T, srv *mux.Server) *mux.State {
	t.Helper()
	st := *srv.State()
	tab, err := routeTable("team-b.nexmux.test=team-b")
	if err != nil {
		t.Fatal(err)
	}
	st.Table = tab
	return &st
}

// Bytes of the next request that net/http read before it began to wait
// (its background read during the last response, or the tail of a read
// that brought the last request) stay with it: the connection is not
// parked, and the request is served whole. Were the early "G" lost, the
// request would arrive as method "ET".
func TestIdleReleaseKeepsEarlyBytes(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, idleRelease: 50 * time.Millisecond})
	const req = "GET /slow HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"
	for _, d := range h1Dials(t, m) {
		for _, early := range []struct {
			name  string
			write func(c net.Conn) error
		}{
			{"during the response", func(c net.Conn) error {
				if _, err := io.WriteString(c, req); err != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond) // the handler sleeps 200
				_, err := io.WriteString(c, "G")
				return err
			}},
			{"with the last request", func(c net.Conn) error {
				_, err := io.WriteString(c, req+"G")
				return err
			}},
		} {
			t.Run(d.name+"/"+early.name, func(t *testing.T) {
				c := d.dial(t)
				br := servedOnce(t, c)
				waitIdle(t, m.srv, 1, 1)
				if err := early.write(c); err != nil {
					t.Fatal(err)
				}
				readResp(t, c, br)
				time.Sleep(300 * time.Millisecond)
				if _, err := io.WriteString(c, "ET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp := readResp(t, c, br)
				if got := resp.Header.Get("X-Method"); resp.StatusCode != 200 || got != "GET" {
					t.Fatalf("status %d, method %q: the early byte was lost", resp.StatusCode, got)
				}
			})
		}
	}
}

// Requests split at random places, with random pauses around the release
// delay between their pieces and between requests, some pipelined: every
// answer is the one to its request, in order, on the one connection.
func TestIdleReleaseRandomPauses(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, idleRelease: 30 * time.Millisecond})
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	pause := func() { time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond) }
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			br := bufio.NewReader(c)
			_, parks := m.srv.Released()
			for round := range 25 {
				n := 1 + rng.IntN(3) // pipelined requests this round
				var all string
				for i := range n {
					all += fmt.Sprintf("GET /v2/r%d-%d HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n", round, i)
				}
				for len(all) > 0 {
					k := 1 + rng.IntN(len(all))
					if _, err := io.WriteString(c, all[:k]); err != nil {
						t.Fatal(err)
					}
					all = all[k:]
					if len(all) > 0 {
						pause()
					}
				}
				for i := range n {
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("round %d, request %d: %v", round, i, err)
					}
					resp.Body.Close()
					want := fmt.Sprintf("/v2/r%d-%d", round, i)
					if got := resp.Header.Get("X-Path"); resp.StatusCode != 200 || got != want || resp.Header.Get("X-Method") != "GET" {
						t.Fatalf("round %d: status %d, %s %q; want 200 GET %q", round, resp.StatusCode, resp.Header.Get("X-Method"), got, want)
					}
				}
				pause()
			}
			if _, total := m.srv.Released(); total == parks {
				t.Fatal("no park in 25 rounds of pauses around the release delay")
			}
		})
	}
}

// A client that wakes a released connection with fewer bytes than net/http
// waits for, then stalls, is closed at --idle-timeout, as without the
// release, not at a fresh --header-timeout after the wake. (Without the
// release net/http closes it silently; a resumed connection is in its
// request reader, which answers the partial request line with a 400.)
func TestIdleReleaseWakeThenStall(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-p"}, idleRelease: 50 * time.Millisecond,
		idleTimeout: 1500 * time.Millisecond, headerTimeout: 5 * time.Second})
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			br := servedOnce(t, c)
			start := time.Now()
			waitIdle(t, m.srv, 1, 1)
			time.Sleep(300 * time.Millisecond)
			if _, err := io.WriteString(c, "G"); err != nil {
				t.Fatal(err)
			}
			waitIdle(t, m.srv, 0, 1) // resumed
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, _ := io.ReadAll(br)
			since := time.Since(start)
			if since < 1400*time.Millisecond || since > 3*time.Second {
				t.Fatalf("closed %v after the last response; want at --idle-timeout (1.5 s)", since)
			}
			if len(got) != 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
				t.Fatalf("answered %q", got)
			}
		})
	}
}

// heldConn sends the first n bytes written to it, then holds the rest
// until release is closed.
type heldConn struct {
	net.Conn
	n       int
	release chan struct{}
}

func (c *heldConn) Write(b []byte) (int, error) {
	if c.n > 0 && len(b) > c.n {
		n := c.n
		c.n = 0
		if _, err := c.Conn.Write(b[:n]); err != nil {
			return 0, err
		}
		<-c.release
		m, err := c.Conn.Write(b[n:])
		return n + m, err
	}
	return c.Conn.Write(b)
}

// A connection accepted before Shutdown but still in its routing phase
// (here: its ClientHello half sent) is handed to http.Server and its
// request answered, not closed once its handshake is done because
// http.Server no longer takes connections.
func TestShutdownServesConnectionsStillRouting(t *testing.T) {
	m := startMuxWith(t, muxConfig{maxConns: 10}) // counted: OpenCounts sees it
	raw, err := net.Dial("tcp", m.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	hc := &heldConn{Conn: raw, n: 10, release: make(chan struct{})}
	c := tls.Client(hc, m.tlsConfig("team-a.nexmux.test"))
	answered := make(chan error, 1)
	go func() {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
			answered <- err
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		answered <- err
	}()
	// The server holds the connection in its routing phase.
	eventually(t, func() (bool, string) {
		active, _ := m.srv.OpenCounts()
		return active == 1, fmt.Sprintf("%d connections open", active)
	})
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- m.srv.Shutdown(ctx)
	}()
	time.Sleep(200 * time.Millisecond) // Shutdown is under way
	close(hc.release)
	if err := <-answered; err != nil {
		t.Fatalf("a connection accepted before Shutdown: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A parked connection woken by its client's next request just before
// Shutdown has that request answered: until net/http has read it, it is
// waited for as a fresh connection's first request is (net/http drops,
// unanswered, a request it reads once it is shutting down).
func TestShutdownAnswersRequestThatWokeParkedConnection(t *testing.T) {
	m := startMuxWith(t, muxConfig{idleRelease: 50 * time.Millisecond})
	c := m.dialH1TLS(t)
	br := servedOnce(t, c)
	waitIdle(t, m.srv, 1, 1)
	// The request's first byte wakes the connection: it goes back to
	// net/http, which waits for the rest.
	if _, err := io.WriteString(c, "G"); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, m.srv, 0, 1)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- m.srv.Shutdown(ctx)
	}()
	time.Sleep(200 * time.Millisecond) // Shutdown is under way
	if _, err := io.WriteString(c, "ET /v2/ HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request that woke a parked connection as Shutdown began: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
