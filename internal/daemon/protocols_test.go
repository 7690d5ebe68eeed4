package daemon_test

// One port, several protocols: --listen refuses what is not TLS; a bound
// port route serves plain HTTP and TLS alike.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestListenRefusesOtherProtocols: on --listen, bytes that are not a TLS
// ClientHello close the connection within the handshake timeout with one
// log line naming the reason.
func TestListenRefusesOtherProtocols(t *testing.T) {
	cfg := teamRoutes()
	cfg.HandshakeTimeout = time.Second
	st, logs := logStack(t, cfg)
	rnd := make([]byte, 512)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	rnd[0] = 0x8f // anything but a handshake record
	cases := []struct {
		name    string
		send    []byte
		reason  string
		minWait time.Duration // the close must not come before this
		alert   bool          // a TLS decode_error alert comes back
		answer  string        // a plain-HTTP answer comes back, containing this
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"), "not_tls", 0, false,
			`"code":"UNSUPPORTED","message":"nexmux: this port serves HTTPS only"`},
		{"ssh", []byte("SSH-2.0-x\r\n"), "not_tls", 0, false, ""},
		{"random", rnd, "not_tls", 0, false, ""},
		{"sslv2-like", []byte{0x16, 0x02, 0x00, 0x00, 0x20, 1, 2, 3}, "not_tls", 0, false, ""},
		{"malformed hello", []byte{0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 1, 2, 3, 4}, "malformed_hello", 0, true, ""},
		{"silent", nil, "timeout", 900 * time.Millisecond, false, ""},
		{"partial hello", []byte{0x16, 0x03, 0x01, 0x06, 0x00, 0x01, 0x00, 0x05}, "timeout", 900 * time.Millisecond, false, ""},
		{"one byte", []byte{0x16}, "timeout", 900 * time.Millisecond, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client := "client=" + c.LocalAddr().String() + " "
			if len(tc.send) > 0 {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			got, elapsed := readUntilClosed(t, c, 8*time.Second)
			if elapsed < tc.minWait {
				t.Fatalf("closed after %v, before the handshake timeout", elapsed)
			}
			wantAlert := []byte{21, 3, 3, 0, 2, 2, 50}
			switch {
			case tc.answer != "":
				if !bytes.HasPrefix(got, []byte("HTTP/1.1 400 ")) || !bytes.Contains(got, []byte(tc.answer)) {
					t.Fatalf("got %q back, want a 400 with %s", got, tc.answer)
				}
			case tc.alert != bytes.Equal(got, wantAlert) || (!tc.alert && len(got) > 0):
				t.Fatalf("got %x back", got)
			}
			waitLog(t, logs, client, "reason="+tc.reason)
			if ls := logLines(logs, client); len(ls) != 1 {
				t.Fatalf("%d log lines for the connection, want 1:\n%s", len(ls), strings.Join(ls, "\n"))
			}
		})
	}
}

// TestPortRoutePlainHTTPAndTLS: a legacy connector port bound by nexmux
// serves plain HTTP and TLS on the same port.
func TestPortRoutePlainHTTPAndTLS(t *testing.T) {
	port := freePort(t)
	cfg := teamRoutes()
	cfg.Port = []string{fmt.Sprintf("%d=team-a", port)}
	cfg.BindPorts = true
	cfg.HandshakeTimeout = time.Second
	st, _ := logStack(t, cfg)
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	realm := regexp.MustCompile(`realm="([^"]*)"`)
	check := func(cl *http.Client, url, wantRealmPrefix string) {
		t.Helper()
		resp, err := cl.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		m := realm.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
		if resp.StatusCode != http.StatusUnauthorized || m == nil {
			t.Fatalf("GET %s: %d %q, want 401 with a realm", url, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if !strings.HasPrefix(m[1], wantRealmPrefix+"/") || !strings.HasSuffix(m[1], "/v2/token") {
			t.Fatalf("GET %s: realm %q, want %s/…/v2/token", url, m[1], wantRealmPrefix)
		}
	}
	plain := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	check(plain, "http://"+hostPort+"/v2/", "http://"+hostPort)
	// The same with a hand-written request on a raw connection.
	c, err := net.DialTimeout("tcp", hostPort, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /v2/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", hostPort)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("raw GET /v2/: %v %v", resp, err)
	}
	resp.Body.Close()

	tlsHost := "legacy.nexmux.test:" + strconv.Itoa(port)
	check(&http.Client{Transport: st.Transport(), Timeout: 30 * time.Second}, "https://"+tlsHost+"/v2/", "https://"+tlsHost)
	// And TLS without SNI (an IP-literal client): still the port's route.
	check(&http.Client{Transport: st.Transport(), Timeout: 30 * time.Second}, "https://"+hostPort+"/v2/", "https://"+hostPort)
}
