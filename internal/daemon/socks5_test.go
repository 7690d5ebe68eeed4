package daemon_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/testnet"
)

func socksStack(t *testing.T, authFile string) *stack.Stack {
	cfg := teamRoutes()
	cfg.Route = append(cfg.Route, "team-one.nexmux.test=pull:team-a,push:team-a-hosted")
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.Socks5AuthFile = authFile
	cfg.HandshakeTimeout = 2 * time.Second
	return stack.Start(t, stack.Options{Config: cfg})
}

// socksTransport reaches registries through the SOCKS5 ingress only: its
// own dialer fails, so nothing can bypass the proxy.
func socksTransport(st *stack.Stack, user *url.Userinfo) *http.Transport {
	u := &url.URL{Scheme: "socks5", Host: st.Daemon.Addr("socks5").String(), User: user}
	return &http.Transport{
		Proxy:           http.ProxyURL(u),
		TLSClientConfig: &tls.Config{RootCAs: st.Pool()},
	}
}

func TestSOCKS5CraneThroughIngress(t *testing.T) {
	st := socksStack(t, "")
	tr := socksTransport(st, nil)
	opts := []remote.Option{remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: stack.User, Password: stack.Password}), remote.WithContext(ctxT(t))}
	// No DNS record and no port: the client CONNECTs to name:443.
	img := pushImageWith(t, "team-one.nexmux.test/socks/app:1", opts)
	got, err := remote.Image(ref(t, "team-one.nexmux.test/socks/app:1"), opts...)
	if err != nil {
		t.Fatalf("pull through SOCKS5: %v", err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		t.Fatalf("digest %s, want %s", gd, wd)
	}
}

func TestSOCKS5Curl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	st := socksStack(t, "")
	ca := filepath.Join(st.CertDir, "ca.crt")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--socks5-hostname", st.Daemon.Addr("socks5").String(),
		"--cacert", ca, "-o", "/dev/null", "-w", "%{http_code} %header{www-authenticate}",
		"https://team-a.nexmux.test/v2/").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "401 ") || !strings.Contains(string(out), `realm="https://team-a.nexmux.test/v2/token"`) {
		t.Fatalf("curl through SOCKS5: %s", out)
	}
}

// socksHandshake speaks SOCKS5 by hand and returns the reply code of a
// request (cmd 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE).
func socksHandshake(t *testing.T, addr string, cmd byte, host string, port int) (byte, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 0})
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m[1] != 0 {
		t.Fatalf("method negotiation: %v %v", m, err)
	}
	req := []byte{5, cmd, 0}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		req = append(append(req, 1), ip.To4()...)
	} else {
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	c.Write(req)
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:4]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	return rep[1], c
}

func TestSOCKS5RefusesEverythingOutsideTheTable(t *testing.T) {
	st := socksStack(t, "")
	// A listener that must never see a connection: if nexmux resolved or
	// dialled the CONNECT target, it would land here.
	port, hits := testnet.Sentinel(t)
	addr := st.Daemon.Addr("socks5").String()
	for _, tc := range []struct {
		host string
		port int
	}{
		{"127.0.0.1", port},
		{"localhost", port},
		{"evil.example.com", 443},
		{"team-a.nexmux.test", port}, // a route name, but not the TLS port
		{"127.0.0.1", st.Port},       // IP literal without a default route
		{"team-a.nexmux.test.evil.example", 443},
	} {
		code, c := socksHandshake(t, addr, 1, tc.host, tc.port)
		c.Close()
		if code == 0 {
			t.Errorf("CONNECT %s:%d accepted", tc.host, tc.port)
		}
	}
	for _, cmd := range []byte{2, 3} {
		code, c := socksHandshake(t, addr, cmd, "team-a.nexmux.test", 443)
		c.Close()
		if code != 7 {
			t.Errorf("command %d: reply %d, want 7 (command not supported)", cmd, code)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := hits.Load(); n != 0 {
		t.Fatalf("the sentinel saw %d connections", n)
	}
	// A CONNECT inside the table is accepted and speaks TLS to the route.
	code, c := socksHandshake(t, addr, 1, "team-a.nexmux.test", 443)
	if code != 0 {
		t.Fatalf("CONNECT team-a.nexmux.test:443: reply %d", code)
	}
	var rest [6]byte
	io.ReadFull(c, rest[:]) // bound address of the reply
	tc := tls.Client(c, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool()})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS through the CONNECT: %v", err)
	}
	tc.Close()
}

func TestSOCKS5AuthAndDeadlines(t *testing.T) {
	file := filepath.Join(t.TempDir(), "socks.auth")
	if err := os.WriteFile(file, []byte("# users\nci:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := socksStack(t, file)
	get := func(user *url.Userinfo) error {
		tr := socksTransport(st, user)
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://team-a.nexmux.test/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(url.UserPassword("ci", "s3cret")); err != nil {
		t.Fatalf("right credentials: %v", err)
	}
	if err := get(url.UserPassword("ci", "wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := get(nil); err == nil {
		t.Fatal("no credentials accepted")
	}
	// A client that opens the SOCKS connection and says nothing is cut
	// at the handshake deadline.
	c, err := net.Dial("tcp", st.Daemon.Addr("socks5").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if err == nil || n != 0 || isTimeout(err) {
		t.Fatalf("silent SOCKS client: read %d %v, want the server to close it", n, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// An emptied or missing auth file means nobody after a reload; failed
// logins are throttled per client address.
func TestSOCKS5AuthFileRevocationAndThrottle(t *testing.T) {
	file := filepath.Join(t.TempDir(), "socks.auth")
	if err := os.WriteFile(file, []byte("ci:s3cret\nops:pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(cfgFile, []byte("log-level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := teamRoutes()
	cfg.Socks5Listen = "127.0.0.1:0"
	cfg.Socks5AuthFile = file
	st := stack.Start(t, stack.Options{Config: cfg, ConfigFile: cfgFile})
	login := func(from, user, pw string) bool {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", st.Daemon.Addr("socks5").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte{5, 1, 2})
		var m [2]byte
		if _, err := io.ReadFull(c, m[:]); err != nil || m[1] != 2 {
			t.Fatalf("method negotiation: %v %v", m, err)
		}
		c.Write(append(append(append([]byte{1, byte(len(user))}, user...), byte(len(pw))), pw...))
		var r [2]byte
		_, err = io.ReadFull(c, r[:])
		return err == nil && r[1] == 0
	}
	if !login("127.0.0.1", "ci", "s3cret") {
		t.Fatal("right credentials refused")
	}
	for range 5 {
		if login("127.0.0.1", "ci", "guess") {
			t.Fatal("wrong password accepted")
		}
	}
	if login("127.0.0.1", "ci", "s3cret") {
		t.Error("logins from a guessing client not throttled")
	}
	if !login("127.0.0.2", "ci", "s3cret") {
		t.Error("another client throttled too")
	}

	// Emptied file: nobody (the reload is accepted, not refused).
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Daemon.Reload(); err != nil {
		t.Fatalf("reload with an empty auth file: %v", err)
	}
	if login("127.0.0.3", "ops", "pw") {
		t.Error("a user of the emptied file still logs in")
	}
	// Missing file: nobody; back again: its users.
	os.Remove(file)
	if err := st.Daemon.Reload(); err != nil {
		t.Fatalf("reload with a missing auth file: %v", err)
	}
	if login("127.0.0.3", "ops", "pw") {
		t.Error("a user of the removed file still logs in")
	}
	os.WriteFile(file, []byte("ops:pw\nops:other\n"), 0o600)
	if err := st.Daemon.Reload(); err == nil || !strings.Contains(err.Error(), `user "ops" again`) {
		t.Errorf("duplicate user: reload %v", err)
	}
}
