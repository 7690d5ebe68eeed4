package daemon_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// slowBlob is an 8 MiB blob in team-b-hosted and an HTTP/2 client whose
// socket is read at rate bytes a second: a client on a slow link, whose
// last bytes are still in the kernel's buffers when nexmux has written the
// whole blob.
type slowBlob struct {
	st     *stack.Stack
	logs   *logBuffer
	tr     *http.Transport
	digest string
	host   string // the registry's host in request URLs
}

func newSlowBlob(t *testing.T, opts stack.Options, rate int) *slowBlob {
	t.Helper()
	logs := &logBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	st := stack.Start(t, opts)
	img, err := random.Image(8<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.Seed("team-b-hosted", "big", "1", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	digest, _ := layers[0].Digest()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", st.Addr)
			if err != nil {
				return nil, err
			}
			return &slowReadConn{Conn: c, rate: rate}, nil
		},
		TLSClientConfig:   &tls.Config{RootCAs: st.Pool()},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &slowBlob{st: st, logs: logs, tr: tr, digest: digest.String(), host: st.Host("team-b")}
}

// newSOCKSSlowBlob is newSlowBlob whose client reaches nexmux through its
// SOCKS5 ingress (as docker does with ALL_PROXY=socks5://...): the
// HTTP/2 connection is an in-process stream, whose socket to the client
// is the SOCKS session's.
func newSOCKSSlowBlob(t *testing.T, opts stack.Options, rate int) *slowBlob {
	t.Helper()
	opts.Config.Socks5Listen = "127.0.0.1:0"
	b := newSlowBlob(t, opts, rate)
	b.tr.Proxy = http.ProxyURL(&url.URL{Scheme: "socks5", Host: b.st.Daemon.Addr("socks5").String()})
	b.tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &slowReadConn{Conn: c, rate: rate}, nil
	}
	// No port: the client CONNECTs to the name's port 443.
	b.host = "team-b.nexmux.test"
	return b
}

func (b *slowBlob) get(t *testing.T, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s%s", b.host, path), nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := b.tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("%s over HTTP/%d, want HTTP/2", path, resp.ProtoMajor)
	}
	return resp
}

// start requests the blob and reads it in the background; it returns once
// nexmux has written the whole blob while the client is still reading it.
// The channel gets the error reading it, or nil with the right digest.
func (b *slowBlob) start(t *testing.T) <-chan error {
	t.Helper()
	resp := b.get(t, "/v2/big/blobs/"+b.digest)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("blob: %s", resp.Status)
	}
	read := make(chan error, 1)
	go func() {
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.Copy(h, resp.Body); err != nil {
			read <- err
			return
		}
		if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != b.digest {
			read <- fmt.Errorf("digest %s, want %s", got, b.digest)
			return
		}
		read <- nil
	}()
	waitLog(t, b.logs, "msg=request", "/blobs/", "status=200")
	select {
	case err := <-read:
		t.Fatalf("the client read the whole blob at once (%v): nothing was in flight", err)
	default:
	}
	return read
}

// --max-conn-age ends an HTTP/2 connection with GOAWAY after the response
// past the age; that response reaches a slow client whole. net/http closes
// the socket a second after the last stream, while the client is still
// reading and sending WINDOW_UPDATEs: closing under them resets the
// connection, and the client loses the tail.
func TestMaxConnAgeLetsHTTP2ResponseArriveWhole(t *testing.T) {
	maxConnAgeWhole(t, newSlowBlob)
}

// So does a slow client reaching nexmux through its SOCKS5 ingress: the
// stream's own socket is a socket pair, the one the client reads is the
// SOCKS session's, and a close must linger there too.
func TestMaxConnAgeLetsHTTP2ResponseArriveWholeOverSOCKS5(t *testing.T) {
	maxConnAgeWhole(t, newSOCKSSlowBlob)
}

// A drain lets an HTTP/2 response in flight reach a slow client whole,
// and waits for it.
func TestDrainLetsHTTP2ResponseArriveWhole(t *testing.T) {
	drainWhole(t, newSlowBlob)
}

// So does a drain through the SOCKS5 ingress: its sessions and the router
// drain at once, and the session passes the linger on to its client.
func TestDrainLetsHTTP2ResponseArriveWholeOverSOCKS5(t *testing.T) {
	drainWhole(t, newSOCKSSlowBlob)
}

type slowBlobOpener func(*testing.T, stack.Options, int) *slowBlob

func maxConnAgeWhole(t *testing.T, open slowBlobOpener) {
	cfg := teamRoutes()
	cfg.MaxConnAge = 300 * time.Millisecond
	b := open(t, stack.Options{Config: cfg}, 2<<20)
	resp := b.get(t, "/v2/")
	resp.Body.Close()
	time.Sleep(400 * time.Millisecond)
	if err := <-b.start(t); err != nil {
		t.Fatalf("blob past --max-conn-age: %v", err)
	}
}

func drainWhole(t *testing.T, open slowBlobOpener) {
	b := open(t, stack.Options{Config: teamRoutes()}, 2<<20)
	read := b.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- b.st.Daemon.Shutdown(ctx) }()
	if err := <-read; err != nil {
		t.Fatalf("blob in flight during a drain: %v", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
}
