package daemon_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/testnet"
)

// tlsFrom opens an HTTP/1.1 TLS connection to team-a from source address
// ip; nil when nexmux refused it.
func tlsFrom(st *stack.Stack, ip string) *tls.Conn {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := tls.DialWithDialer(d, "tcp", st.Addr, &tls.Config{
		ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		return nil
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// roundTrip sends one request on c and reads its response.
func roundTrip(c net.Conn, br *bufio.Reader, path string) (*http.Response, error) {
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// The attack of issue 17: one client takes every --max-conns slot and keeps
// each connection busy with "GET /v3/" (refused locally, Nexus never
// reached). A legitimate client is still served while it runs.
func TestLegitimateClientServedDuringConnectionFlood(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxConns = 20
	cfg.MaxConnsPerClient = 5
	st := stack.Start(t, stack.Options{Config: cfg})
	var held []*tls.Conn
	for range 30 {
		c := tlsFrom(st, "127.0.0.1")
		if c == nil {
			continue
		}
		br := bufio.NewReader(c)
		if resp, err := roundTrip(c, br, "/v3/"); err != nil || resp.StatusCode != http.StatusNotFound {
			c.Close()
			continue
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if len(held) > 5 {
		t.Errorf("one client holds %d connections, want at most --max-conns-per-client 5", len(held))
	}
	// An operator sees how close the listener is to refusing.
	if limit := counterValue(t, st.Daemon, "nexmux_max_connections", nil); limit != 20 {
		t.Errorf("nexmux_max_connections %v, want 20", limit)
	}
	waitFor(t, "nexmux_open_connections to count the held connections", func() bool {
		return counterValue(t, st.Daemon, "nexmux_open_connections", nil) == float64(len(held))
	})
	legit := &http.Client{Transport: transportFrom(st, "127.0.0.2")}
	resp, err := legit.Get("https://" + st.Host("team-a") + "/v2/")
	if err != nil {
		t.Fatalf("legitimate client not served during the flood: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("legitimate client: %d, want Nexus's 401", resp.StatusCode)
	}
}

// Connections that send nothing count against their client's cap from the
// moment they are accepted: one address opening --max-conns silent sockets
// holds only its share, the rest are closed at once (not at the routing
// deadline), and another client is served meanwhile.
func TestSilentConnectionsCountPerClientAtAccept(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxConns = 20
	cfg.MaxConnsPerClient = 5
	logs := &testnet.Buffer{}
	st := stack.Start(t, stack.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if closed := closedOf(silentConns(t, st.Addr, 20), 15, time.Second); closed != 15 {
		t.Errorf("%d of 20 silent connections from one address closed, want 15 (--max-conns-per-client 5)", closed)
	}
	// Fifteen refusals in a burst are one or two log lines, not fifteen.
	if n := strings.Count(logs.String(), "reason=max_conns_per_client"); n < 1 || n > 2 {
		t.Errorf("%d per-client refusal lines for 15 refusals in a second, want 1 or 2:\n%s", n, logs)
	}
	legit := &http.Client{Transport: transportFrom(st, "127.0.0.2")}
	resp, err := legit.Get("https://" + st.Host("team-a") + "/v2/")
	if err != nil {
		t.Fatalf("another client not served while one holds silent connections: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("other client: %d, want Nexus's 401", resp.StatusCode)
	}
}

// Behind a trusted balancer, a client's connections count against its own
// cap as soon as their PROXY header names it: a balancer sends the header
// at once, and the client behind it may then send nothing (or a hello
// byte by byte). Counted only once the whole ClientHello came, one client
// could hold every --max-conns place for the routing deadline.
func TestSilentConnectionsBehindBalancerCountPerClient(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxConns = 20
	cfg.MaxConnsPerClient = 5
	cfg.ProxyProtocolFrom = []string{"127.0.0.1/32"}
	st := stack.Start(t, stack.Options{Config: cfg})
	cs := silentConns(t, st.Addr, 20)
	for i, c := range cs {
		hdr := "PROXY TCP4 198.51.100.7 127.0.0.1 40000 443\r\n"
		if i%2 == 1 {
			hdr += "\x16\x03" // and the first bytes of a hello
		}
		if _, err := io.WriteString(c, hdr); err != nil {
			t.Fatal(err)
		}
	}
	if closed := closedOf(cs, 15, time.Second); closed != 15 {
		t.Errorf("%d of 20 silent connections of one client behind the balancer closed, want 15 (--max-conns-per-client 5)", closed)
	}
}

// A connection that produces only locally refused requests is closed after
// the third in a row; one that reaches Nexus is not.
func TestConnectionOfOnlyRefusedRequestsClosed(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: teamRoutes()})
	c := tlsFrom(st, "127.0.0.1")
	if c == nil {
		t.Fatal("dial")
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 1; i <= 3; i++ {
		resp, err := roundTrip(c, br, "/v3/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if resp.Close != (i == 3) {
			t.Fatalf("request %d: Connection close %v", i, resp.Close)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after three refused requests: %v", err)
	}

	ok := tlsFrom(st, "127.0.0.1")
	defer ok.Close()
	br = bufio.NewReader(ok)
	for i, p := range []string{"/v3/", "/v3/", "/v2/", "/v3/", "/v3/"} {
		resp, err := roundTrip(ok, br, p)
		if err != nil || resp.Close {
			t.Fatalf("request %d %s: %v, close %v", i, p, err, resp != nil && resp.Close)
		}
	}
}

// --max-conn-age: the first response past the age ends the connection.
func TestMaxConnAge(t *testing.T) {
	for _, age := range []time.Duration{300 * time.Millisecond, 0} {
		cfg := teamRoutes()
		cfg.MaxConnAge = age
		st := stack.Start(t, stack.Options{Config: cfg})
		c := tlsFrom(st, "127.0.0.1")
		br := bufio.NewReader(c)
		time.Sleep(400 * time.Millisecond)
		resp, err := roundTrip(c, br, "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusUnauthorized || resp.Close != (age > 0) {
			t.Errorf("age %v: %d, close %v", age, resp.StatusCode, resp.Close)
		}
		c.Close()
	}
}

// SOCKS5 streams count against --max-conns. With two of three places
// held, a session takes the third and its CONNECT, wanting a second, is
// refused.
func TestSOCKS5CountsAgainstMaxConns(t *testing.T) {
	cfg := teamRoutes()
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.MaxConns = 3
	st := stack.Start(t, stack.Options{Config: cfg})
	var held []*tls.Conn
	for range 2 {
		c := tlsFrom(st, "127.0.0.1")
		if c == nil {
			t.Fatal("direct connection refused below the cap")
		}
		if _, err := roundTrip(c, bufio.NewReader(c), "/v2/"); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Refused in SOCKS itself ("connection refused"), never "succeeded".
	code, sc := socksHandshake(t, st.Daemon.Addr("socks5").String(), 1, "team-a.nexmux.test", 443)
	defer sc.Close()
	if code != 5 {
		t.Fatalf("CONNECT with --max-conns full: reply %d, want 5 (connection refused)", code)
	}
	// Below the cap again, SOCKS5 works: with two places free, the two a
	// stream takes, its session's among them (TestSOCKS5StreamTakesTwoPlaces).
	for _, c := range held {
		c.Close()
	}
	held = nil
	waitFor(t, "a SOCKS5 session once a slot is free", func() bool {
		tr := socksTransport(st, nil)
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://team-a.nexmux.test/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized
	})
}

// The SOCKS5 ingress counts sessions without a stream yet from accept,
// against --max-conns-per-client: one address's silent SOCKS sockets
// beyond it are closed at once.
func TestSilentSOCKS5SessionsCountPerClient(t *testing.T) {
	cfg := teamRoutes()
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.MaxConnsPerClient = 3
	st := stack.Start(t, stack.Options{Config: cfg})
	if closed := closedOf(silentConns(t, st.Daemon.Addr("socks5").String(), 10), 7, time.Second); closed != 7 {
		t.Errorf("%d of 10 silent SOCKS5 sessions from one address closed, want 7 (--max-conns-per-client 3)", closed)
	}
}

// silentConns opens n connections to addr from 127.0.0.1 that send
// nothing; they close with the test.
func silentConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// closedOf counts the connections of cs the server closed (or answered):
// it waits until want of them are, up to 5 s (a loaded machine may take
// that long to accept and close them, far below a routing or handshake
// deadline), and for at least settle in all, so that any closed beyond
// want show too.
func closedOf(cs []net.Conn, want int, settle time.Duration) int {
	start := time.Now()
	closed := make([]bool, len(cs))
	n := 0
	for {
		for i, c := range cs {
			if closed[i] {
				continue
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				closed[i] = true
				n++
			}
		}
		since := time.Since(start)
		if n >= want && since >= settle || n > want || since > 5*time.Second {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Refused connections are logged one by one only up to a few a second per
// reason: a client opening connections with made-up server names in a loop
// wrote a line each (attacker-chosen names included), thousands a second
// from one core. The rest are counted in the metric and summed up by the
// next line logged: every refusal is on a line or in a count. A burst may
// straddle a second (this one does), so the count may come on any later
// line, not only the last.
func TestRefusalLinesLimitedPerReason(t *testing.T) {
	st, logs := logStack(t, teamRoutes())
	refuse := func(host string) {
		c, err := net.Dial("tcp", st.Addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = tls.Client(c, &tls.Config{ServerName: host, InsecureSkipVerify: true}).Handshake()
		c.Close()
	}
	testnet.RefusalBurst(t, refuse, logs.String, "reason=unknown_sni", "unknown.test")
}

// --per-client-ipv6-prefix 64: the addresses of one /64 are one client for
// --max-conns-per-client and --max-requests-per-client, so a host holding
// a /64 cannot open a fresh address per connection; another /64 is still
// served. By default each address is a client of its own.
func TestPerClientIPv6Prefix(t *testing.T) {
	for _, prefix := range []int{64, 0} {
		cfg := teamRoutes()
		cfg.MaxConns = 40
		cfg.MaxConnsPerClient = 5
		cfg.MaxRequestsPerClient = 2
		cfg.ProxyProtocolFrom = []string{"127.0.0.1/32"}
		cfg.PerClientIPv6Prefix = prefix
		st := stack.Start(t, stack.Options{Config: cfg, Nodes: 1})

		cs := silentConns(t, st.Addr, 20)
		for i, c := range cs {
			if _, err := fmt.Fprintf(c, "PROXY TCP6 2001:db8:1:2::%x 2001:db8::ffff %d 443\r\n", i+1, 40000+i); err != nil {
				t.Fatal(err)
			}
		}
		want := 15
		if prefix == 0 {
			want = 0
		}
		if closed := closedOf(cs, want, time.Second); closed != want {
			t.Errorf("prefix %d: %d of 20 silent connections from 20 addresses of one /64 closed, want %d (--max-conns-per-client 5)", prefix, closed, want)
		}
		for _, c := range cs {
			c.Close()
		}
		waitFor(t, "the silent connections' places given back", func() bool {
			return counterValue(t, st.Daemon, "nexmux_open_connections", nil) == 0
		})

		node := st.NexusNodes[0]
		node.SetBlackhole(true)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		// Requests not refused wait at the blackholed node until cancel.
		get := func(ctx context.Context, src string) (*http.Response, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+st.Host("team-a")+"/v2/app/manifests/1", nil)
			req.SetBasicAuth(stack.User, stack.Password)
			return (&http.Client{Transport: transportBehind(st, src)}).Do(req)
		}
		for _, src := range []string{"2001:db8:1:2::a", "2001:db8:1:2::b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if resp, err := get(ctx, src); err == nil {
					resp.Body.Close()
				}
			}()
		}
		waitFor(t, "two held requests at Nexus", func() bool { return len(node.Requests()) == 2 })
		third := make(chan int, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bounded: before the fix it waited at the node.
			ctx, stop := context.WithTimeout(ctx, 20*time.Second)
			defer stop()
			resp, err := get(ctx, "2001:db8:1:2::c")
			if err != nil {
				third <- 0
				return
			}
			resp.Body.Close()
			third <- resp.StatusCode
		}()
		if prefix == 64 {
			if code := <-third; code != http.StatusTooManyRequests {
				t.Errorf("prefix 64: third request from the /64: %d, want 429", code)
			}
		} else {
			waitFor(t, "a third address's request at Nexus", func() bool { return len(node.Requests()) == 3 })
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := get(ctx, "2001:db8:1:3::a"); err == nil {
				resp.Body.Close()
			}
		}()
		atNexus := 3 // the third from the /64 was refused
		if prefix == 0 {
			atNexus = 4
		}
		waitFor(t, "another /64's request at Nexus", func() bool { return len(node.Requests()) == atNexus })
		cancel()
		wg.Wait()
		node.SetBlackhole(false)
	}
}

// transportBehind is st.Transport as a trusted balancer: each connection
// starts with a PROXY v1 header naming client address ip.
func transportBehind(st *stack.Stack, ip string) *http.Transport {
	tr := st.Transport()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return nil, err
		}
		if _, err := fmt.Fprintf(c, "PROXY TCP6 %s 2001:db8::ffff 40000 443\r\n", ip); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	return tr
}

// A SOCKS5 stream holds three descriptors on nexmux's side (the SOCKS
// client's socket and the socket pair into the router) before any
// connection to Nexus, where --max-conns' default allows two a place: it
// takes two places (its session's, taken at accept, and one more), as a
// passthrough stream takes three (TestPassthroughStreamTakesThreePlaces).
// Counted as one, SOCKS5 streams ran nexmux out of descriptors at two
// thirds of the limit.
func TestSOCKS5StreamTakesTwoPlaces(t *testing.T) {
	cfg := teamRoutes()
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.MaxConns = 3
	st := stack.Start(t, stack.Options{Config: cfg})
	addr := st.Daemon.Addr("socks5").String()
	code, first := socksHandshake(t, addr, 1, "team-a.nexmux.test", 443)
	defer first.Close()
	if code != 0 {
		t.Fatalf("first SOCKS5 stream under --max-conns 3: reply %d, want 0", code)
	}
	code, second := socksHandshake(t, addr, 1, "team-a.nexmux.test", 443)
	defer second.Close()
	if code != 5 {
		t.Fatalf("second SOCKS5 stream under --max-conns 3: reply %d, want 5 (connection refused): the first holds two places", code)
	}
	// The refused session gives its place back before it is closed; the
	// place left then takes a direct connection.
	io.Copy(io.Discard, second)
	c := tlsFrom(st, "127.0.0.1")
	if c == nil {
		t.Fatal("a direct connection refused with one --max-conns place left")
	}
	c.Close()
}

// socksGreeted opens a SOCKS5 session that sends its greeting and nothing
// more; false when nexmux closed it instead of answering.
func socksGreeted(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return false
	}
	var m [2]byte
	_, err = io.ReadFull(c, m[:])
	return err == nil
}

// A SOCKS5 session that has not sent its CONNECT holds a descriptor (its
// socket), so it takes a --max-conns place from accept: passthrough
// streams and silent SOCKS5 sessions together once ran nexmux out of
// descriptors (ulimit -n 4096: 3×248 streams, 2×248 sessions, and the
// metrics listener's accept failed with EMFILE). Beyond --max-conns a
// session is closed at once and counted as max_conns; its CONNECT takes
// the stream's two places with its own handed over.
func TestSilentSOCKS5SessionsTakeMaxConnsPlaces(t *testing.T) {
	be := startPTBackend(t, false)
	cfg := teamRoutes()
	cfg.Passthrough = []string{ptName + "=" + be.addr}
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.MaxConns = 9
	cfg.MaxConnsPerClient = 0
	st, _ := logStack(t, cfg)
	socks := st.Daemon.Addr("socks5").String()
	open := func() float64 { return counterValue(t, st.Daemon, "nexmux_open_connections", nil) }
	maxConns := map[string]string{"reason": "max_conns"}
	var pts []*tls.Conn
	for i := range 3 {
		c, err := ptDial(st.Addr, nil, be.ca.Pool())
		if err != nil {
			t.Fatalf("passthrough stream %d of 3: %v", i+1, err)
		}
		defer c.Close()
		pts = append(pts, c)
	}
	waitFor(t, "three passthrough streams' nine places", func() bool { return open() == 9 })
	before := counterValue(t, st.Daemon, "nexmux_handshake_failures_total", maxConns)
	for i := range 4 {
		if socksGreeted(t, socks) {
			t.Fatalf("silent SOCKS5 session %d greeted with --max-conns 9 held by passthrough streams", i+1)
		}
	}
	if n := counterValue(t, st.Daemon, "nexmux_handshake_failures_total", maxConns) - before; n != 4 {
		t.Errorf("%v max_conns refusals counted for 4 sessions, want 4", n)
	}

	// Three places free: a stream (two, its session's among them) and
	// one silent session fill them.
	pts[0].Close()
	waitFor(t, "a closed passthrough stream's places", func() bool { return open() == 6 })
	code, sc := socksHandshake(t, socks, 1, "team-a.nexmux.test", 443)
	defer sc.Close()
	if code != 0 {
		t.Fatalf("CONNECT with three places free: reply %d, want 0", code)
	}
	if n := open(); n != 8 {
		t.Fatalf("%v places with a SOCKS5 stream beside two passthrough streams, want 8", n)
	}
	if !socksGreeted(t, socks) {
		t.Fatal("a silent session closed with one place free")
	}
	if socksGreeted(t, socks) {
		t.Fatal("a silent session greeted with --max-conns full")
	}
	sc.Close()
	waitFor(t, "a closed SOCKS5 stream's two places", func() bool { return open() == 7 })
}
