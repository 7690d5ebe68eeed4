package daemon_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// transportFrom is st.Transport dialing from local source address ip
// (another loopback address: another client to nexmux).
func transportFrom(st *stack.Stack, ip string) *http.Transport {
	tr := st.Transport()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
	}
	return tr
}

// One client at --max-requests-per-client gets 429 with Retry-After;
// another client is still served; slots come back when requests end.
func TestMaxRequestsPerClient(t *testing.T) {
	cfg := teamRoutes()
	cfg.MaxRequestsPerClient = 2
	st := stack.Start(t, stack.Options{Config: cfg, Nodes: 1})
	node := st.NexusNodes[0]
	node.SetBlackhole(true)
	url := "https://" + st.Host("team-a") + "/v2/app/manifests/1"
	get := func(cl *http.Client, ctx context.Context) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		return cl.Do(req)
	}
	a := &http.Client{Transport: transportFrom(st, "127.0.0.1")}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := get(a, ctx); err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, "two held requests at Nexus", func() bool { return len(node.Requests()) == 2 })

	resp, err := get(a, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "TOOMANYREQUESTS") {
		t.Fatalf("third request of one client: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	// Another client is not refused: its request reaches Nexus.
	b := &http.Client{Transport: transportFrom(st, "127.0.0.2")}
	bctx, bcancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		if resp, err := get(b, bctx); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the other client's request at Nexus", func() bool { return len(node.Requests()) == 3 })
	cancel()
	bcancel()
	wg.Wait()
	node.SetBlackhole(false)

	// The slots were released.
	waitFor(t, "client A served again", func() bool {
		resp, err := get(a, context.Background())
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500
	})
}

// The HTTP/2 SETTINGS nexmux sends offer 100 concurrent streams, not Go's 250.
func TestHTTP2MaxConcurrentStreams(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: teamRoutes()})
	c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if c.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatal("h2 not negotiated")
	}
	// Client preface and an empty SETTINGS frame.
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	c.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	br := bufio.NewReader(c)
	hdr := make([]byte, 9)
	if _, err := io.ReadFull(br, hdr); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if hdr[3] != 4 {
		t.Fatalf("first frame type %d, want SETTINGS", hdr[3])
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+6 <= len(payload); i += 6 {
		if binary.BigEndian.Uint16(payload[i:]) == 3 { // SETTINGS_MAX_CONCURRENT_STREAMS
			if v := binary.BigEndian.Uint32(payload[i+2:]); v != 100 {
				t.Fatalf("MAX_CONCURRENT_STREAMS %d, want 100", v)
			}
			return
		}
	}
	t.Fatal("no MAX_CONCURRENT_STREAMS in the server's SETTINGS")
}
