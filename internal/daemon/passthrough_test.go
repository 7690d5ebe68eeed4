package daemon_test

// SNI passthrough: TLS for a passthrough route is copied raw to another TLS
// server, optionally behind a PROXY header.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	dto "github.com/prometheus/client_model/go"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/internal/testnet"
)

const ptName = "passthrough.nexmux.test"

// ptResult is what the passthrough backend saw on one connection.
type ptResult struct {
	remote   string
	header   *proxyproto.Header
	sni      string
	received int64
	sum      [sha256.Size]byte
	fin      bool // the TCP stream ended (half-close) after close_notify
	err      error
}

// ptBackend is a TLS echo server with its own CA: it echoes every byte,
// and once the client has closed its side (close_notify, then TCP FIN)
// it sends "BYE <bytes> <sha256> fin=<bool>\n" and closes its side.
type ptBackend struct {
	addr    string
	ca      *certs.CA
	results chan ptResult
}

func startPTBackend(t *testing.T, proxyHeader bool) *ptBackend {
	t.Helper()
	ca, err := certs.NewCA("passthrough backend CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueTLS(ptName, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &ptBackend{addr: ln.Addr().String(), ca: ca, results: make(chan ptResult, 64)}
	if proxyHeader {
		ln = &proxyproto.Listener{
			Listener:          ln,
			ConnPolicy:        func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil },
			ReadHeaderTimeout: 5 * time.Second,
		}
	}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"echo"}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go b.serve(c.(*tls.Conn))
		}
	}()
	t.Cleanup(func() { tln.Close(); <-done })
	return b
}

func (b *ptBackend) serve(tc *tls.Conn) {
	defer tc.Close()
	var res ptResult
	defer func() {
		select {
		case b.results <- res:
		default:
		}
	}()
	_ = tc.SetDeadline(time.Now().Add(2 * time.Minute))
	if res.err = tc.Handshake(); res.err != nil {
		return
	}
	res.remote = tc.RemoteAddr().String()
	res.sni = tc.ConnectionState().ServerName
	if pc, ok := tc.NetConn().(*proxyproto.Conn); ok {
		res.header = pc.ProxyHeader()
	}
	h := sha256.New()
	res.received, res.err = io.Copy(io.MultiWriter(tc, h), tc)
	if res.err != nil {
		return
	}
	copy(res.sum[:], h.Sum(nil))
	// close_notify arrived; the TCP stream must end too (FIN, not data).
	_ = tc.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := tc.NetConn().Read(make([]byte, 1))
	res.fin = n == 0 && errors.Is(err, io.EOF)
	_ = tc.NetConn().SetReadDeadline(time.Time{})
	if _, res.err = fmt.Fprintf(tc, "BYE %d %x fin=%v\n", res.received, res.sum, res.fin); res.err != nil {
		return
	}
	res.err = tc.CloseWrite()
	if tcp, ok := underlying(tc.NetConn()); ok {
		_ = tcp.CloseWrite()
	}
}

func underlying(c net.Conn) (*net.TCPConn, bool) {
	if pc, ok := c.(*proxyproto.Conn); ok {
		c = pc.Raw()
	}
	tcp, ok := c.(*net.TCPConn)
	return tcp, ok
}

func (b *ptBackend) result(t *testing.T) ptResult {
	t.Helper()
	select {
	case r := <-b.results:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the passthrough backend reported no connection")
		return ptResult{}
	}
}

// ptDial opens a TLS connection for ptName through nexmux at addr, after
// writing hdr (nil: none), verifying the server against pool.
func ptDial(addr string, hdr []byte, pool *x509.CertPool) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var c net.Conn = raw
	if hdr != nil {
		c = &ppConn{Conn: raw, header: hdr, mode: ppOneWrite}
	}
	tc := tls.Client(c, &tls.Config{ServerName: ptName, RootCAs: pool, NextProtos: []string{"echo"}})
	_ = tc.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

// halfClose ends the client's side: close_notify, then TCP FIN.
func halfClose(tc *tls.Conn) error {
	if err := tc.CloseWrite(); err != nil {
		return fmt.Errorf("close_notify: %w", err)
	}
	c := tc.NetConn()
	if pc, ok := c.(*ppConn); ok {
		c = pc.Conn
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return errors.New("no TCP connection under the TLS client")
	}
	if err := tcp.CloseWrite(); err != nil {
		return fmt.Errorf("TCP half-close: %w", err)
	}
	return nil
}

// TestPassthroughEchoLargeHalfClose: the client completes a handshake with
// the backend's own certificate, 32 MiB go each way, and a half-close
// reaches the backend, which still sends its final reply.
func TestPassthroughEchoLargeHalfClose(t *testing.T) {
	be := startPTBackend(t, false)
	cfg := teamRoutes()
	cfg.Passthrough = []string{ptName + "=" + be.addr}
	st, logs := logStack(t, cfg)

	// nexmux's CA does not vouch for the backend: the certificate is the
	// backend's, not one nexmux terminated with.
	if _, err := ptDial(st.Addr, nil, st.Pool()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("handshake verified against nexmux's CA: %v; want an unknown-authority error", err)
	}
	if r := be.result(t); r.err == nil {
		t.Fatal("the backend completed a handshake the client refused")
	}

	tc, err := ptDial(st.Addr, nil, be.ca.Pool())
	if err != nil {
		t.Fatalf("handshake through passthrough: %v", err)
	}
	defer tc.Close()
	cs := tc.ConnectionState()
	if cn := cs.PeerCertificates[0].Subject.CommonName; cn != ptName || cs.PeerCertificates[0].Issuer.CommonName != "passthrough backend CA" {
		t.Fatalf("peer certificate %q issued by %q", cn, cs.PeerCertificates[0].Issuer.CommonName)
	}
	if cs.NegotiatedProtocol != "echo" {
		t.Fatalf("ALPN %q, want the backend's echo", cs.NegotiatedProtocol)
	}

	// A small round trip first.
	if _, err := tc.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 5)
	if _, err := io.ReadFull(tc, line); err != nil || string(line) != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}

	const size = 32 << 20
	src := rand.NewChaCha8([32]byte{4, 2})
	sent := sha256.New()
	sent.Write([]byte("ping\n"))
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.MultiWriter(tc, sent), io.LimitReader(src, size))
		if err == nil {
			err = halfClose(tc)
		}
		werr <- err
	}()
	got := sha256.New()
	got.Write([]byte("ping\n"))
	if _, err := io.CopyN(got, tc, size); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("sending: %v", err)
	}
	rest, err := io.ReadAll(tc)
	if err != nil {
		t.Fatalf("reading after the half-close: %v (got %q)", err, rest)
	}
	sum := sent.Sum(nil)
	if !bytes.Equal(got.Sum(nil), sum) {
		t.Fatal("the echoed 32 MiB differ from what was sent")
	}
	want := fmt.Sprintf("BYE %d %x fin=true\n", size+5, sum)
	if string(rest) != want {
		t.Fatalf("final reply %q, want %q", rest, want)
	}
	r := be.result(t)
	if r.err != nil || r.received != size+5 || !r.fin || r.sni != ptName {
		t.Fatalf("backend saw %+v", r)
	}
	if ls := logLines(logs, "connection refused"); len(ls) > 0 {
		t.Fatalf("connections refused:\n%s", strings.Join(ls, "\n"))
	}
	// The route's byte counters carry the stream (TLS records and all)
	// once it has ended.
	tc.Close()
	route := map[string]string{"route": ptName}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mfs, err := st.Daemon.Metrics().Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		mf := map[string]*dto.MetricFamily{}
		for _, f := range mfs {
			mf[f.GetName()] = f
		}
		in, out := metric(mf, "nexmux_request_bytes_total", route), metric(mf, "nexmux_response_bytes_total", route)
		if in > size && out > size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("passthrough route's bytes: %.0f received, %.0f sent; want over %d each way", in, out, size)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPassthroughOpenSSL: openssl s_client sees the backend's certificate.
func TestPassthroughOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	be := startPTBackend(t, false)
	cfg := teamRoutes()
	cfg.Passthrough = []string{ptName + "=" + be.addr}
	st, _ := logStack(t, cfg)
	caFile := filepath.Join(t.TempDir(), "backend-ca.pem")
	if err := os.WriteFile(caFile, be.ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", st.Addr, "-servername", ptName,
		"-CAfile", caFile, "-verify_return_error")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	subject := regexp.MustCompile(`(?m)^subject=.*CN ?= ?` + regexp.QuoteMeta(ptName) + `\s*$`)
	issuer := regexp.MustCompile(`(?m)^issuer=.*CN ?= ?passthrough backend CA\s*$`)
	if !subject.Match(out) || !issuer.Match(out) || !bytes.Contains(out, []byte("Verify return code: 0 (ok)")) {
		t.Fatalf("openssl did not see the backend's certificate:\n%s", out)
	}
}

// TestPassthroughProxyProtocolOut: with --passthrough-proxy-protocol the
// backend learns the real client address (also when it came in a PROXY
// header from a trusted balancer) and, with v2, the server name.
func TestPassthroughProxyProtocolOut(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		for _, inbound := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/inbound-proxy=%v", version, inbound), func(t *testing.T) {
				be := startPTBackend(t, true)
				cfg := teamRoutes()
				cfg.Passthrough = []string{ptName + "=" + be.addr}
				cfg.PassthroughProxyProtocol = version
				var hdr []byte
				if inbound {
					cfg.ProxyProtocolFrom = []string{"127.0.0.0/8"}
				}
				st, _ := logStack(t, cfg)
				dst := st.Addr // what the client connected to
				if inbound {
					dst = "198.51.100.1:443" // the balancer's address
					hdr = ppV2(t, "203.0.113.7:5555", dst)
				}
				tc, err := ptDial(st.Addr, hdr, be.ca.Pool())
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				defer tc.Close()
				client := tc.LocalAddr().String()
				if inbound {
					client = "203.0.113.7:5555"
				}
				if _, err := tc.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				if err := halfClose(tc); err != nil {
					t.Fatal(err)
				}
				rest, err := io.ReadAll(tc)
				if err != nil || !bytes.HasPrefix(rest, []byte("hello")) || !bytes.Contains(rest, []byte("BYE 5 ")) {
					t.Fatalf("reply %q %v", rest, err)
				}
				r := be.result(t)
				if r.err != nil || r.header == nil {
					t.Fatalf("backend: header %v, err %v", r.header, r.err)
				}
				if want := map[string]byte{"v1": 1, "v2": 2}[version]; r.header.Version != want {
					t.Fatalf("PROXY version %d, want %d", r.header.Version, want)
				}
				if r.remote != client || r.header.SourceAddr.String() != client {
					t.Fatalf("backend saw client %s (header %s), want %s", r.remote, r.header.SourceAddr, client)
				}
				if r.header.DestinationAddr.String() != dst {
					t.Fatalf("header destination %s, want %s", r.header.DestinationAddr, dst)
				}
				tlvs, err := r.header.TLVs()
				if err != nil {
					t.Fatal(err)
				}
				var authority []string
				for _, tlv := range tlvs {
					if tlv.Type == proxyproto.PP2_TYPE_AUTHORITY {
						authority = append(authority, string(tlv.Value))
					}
				}
				switch version {
				case "v2":
					if len(authority) != 1 || authority[0] != ptName {
						t.Fatalf("AUTHORITY TLVs %q, want [%q]", authority, ptName)
					}
				case "v1":
					if len(tlvs) != 0 {
						t.Fatalf("v1 header with TLVs %v", tlvs)
					}
				}
			})
		}
	}
}

// TestPassthroughBackendDown: an unreachable backend ends the client's
// handshake at once with an internal_error alert and logs why.
func TestPassthroughBackendDown(t *testing.T) {
	dead := testnet.DeadAddr(t)
	cfg := teamRoutes()
	cfg.Passthrough = []string{ptName + "=" + dead}
	st, logs := logStack(t, cfg)
	start := time.Now()
	raw, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(8 * time.Second))
	err = tls.Client(raw, &tls.Config{ServerName: ptName, InsecureSkipVerify: true}).Handshake()
	if err == nil {
		t.Fatal("handshake with a dead backend succeeded")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed: %v", err)
	}
	if !strings.Contains(err.Error(), "remote error: tls: internal error") {
		t.Errorf("client saw %v, want the internal_error alert", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("closed after %v", el)
	}
	line := waitLog(t, logs, "reason=passthrough_dial")
	if !strings.Contains(line, "sni="+ptName) || !strings.Contains(line, "backend="+dead) {
		t.Fatalf("log line lacks the name or backend: %s", line)
	}
	// A terminated route on the same listener is unaffected.
	if status := get(st, "team-a", "/v2/"); status != http.StatusUnauthorized {
		t.Fatalf("team-a after a failed passthrough: %d", status)
	}
}

// A passthrough stream holds two sockets and, while Linux splices it, a
// pipe each way (two descriptors each): three times what --max-conns'
// default, taken from the open-file limit, allows a connection. Streams up
// to --max-conns ran nexmux out of descriptors: accepts and dials to Nexus
// failed for everyone. A stream now takes three places.
func TestPassthroughStreamTakesThreePlaces(t *testing.T) {
	be := startPTBackend(t, false)
	cfg := teamRoutes()
	cfg.Passthrough = []string{ptName + "=" + be.addr}
	cfg.MaxConns = 9
	cfg.MaxConnsPerClient = 0
	st, _ := logStack(t, cfg)
	var open []*tls.Conn
	for i := range 3 {
		c, err := ptDial(st.Addr, nil, be.ca.Pool())
		if err != nil {
			t.Fatalf("stream %d of 3: %v", i+1, err)
		}
		defer c.Close()
		open = append(open, c)
	}
	if c, err := ptDial(st.Addr, nil, be.ca.Pool()); err == nil {
		c.Close()
		t.Fatal("a fourth stream was served under --max-conns 9: each holds up to six descriptors")
	}
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := ptDial(st.Addr, nil, be.ca.Pool())
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the places of a stream that ended did not come back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
