package daemon_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// pacedReader gives its bytes piece by piece with a pause before each: a
// slow link that never stops.
type pacedReader struct {
	r     io.Reader
	piece int
	pause time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	time.Sleep(p.pause)
	return p.r.Read(b[:min(len(b), p.piece)])
}

// A push or pull that takes many times --header-timeout, but never stops
// moving, is not cut: the header timeout is http.Server's
// ReadHeaderTimeout, never a ReadTimeout or WriteTimeout, which would end
// every large layer transfer at exactly that many seconds (pitfalls.md 3).
// With the body and send timeouts off and at their default, over HTTP/1.1
// and HTTP/2.
func TestTransfersLongerThanHeaderTimeoutAreNotCut(t *testing.T) {
	if testing.Short() {
		t.Skip("paced transfers skipped in -short mode")
	}
	const (
		headerTimeout = 300 * time.Millisecond
		size          = 1 << 20
		piece         = 64 << 10
		pause         = 50 * time.Millisecond // 16 pieces: ~0.8 s, over twice the header timeout
	)
	blob := bytes.Repeat([]byte("layer-bytes-"), size/12+1)[:size]
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	for _, bodyTimeout := range []time.Duration{0, time.Minute} {
		cfg := teamRoutes()
		cfg.HeaderTimeout = headerTimeout
		cfg.BodyTimeout, cfg.SendTimeout = bodyTimeout, bodyTimeout
		st := stack.Start(t, stack.Options{Config: cfg})
		for _, h2 := range []bool{false, true} {
			t.Run(fmt.Sprintf("body-timeout=%v/h2=%v", bodyTimeout, h2), func(t *testing.T) {
				cl, _ := protoClient(t, st, h2)
				do := func(method, url string, body io.Reader) *http.Response {
					t.Helper()
					return authedDo(t, cl, method, url, body, 0)
				}
				base := "https://" + st.Host("team-a-push")
				name := fmt.Sprintf("slow/b%v-h%v", bodyTimeout.Seconds(), h2)
				loc, sep := startUpload(t, cl, base+"/v2/"+name+"/blobs/uploads/")
				// Chunked (no Content-Length), as docker sends a layer.
				start := time.Now()
				resp := do(http.MethodPut, loc+sep+"digest="+digest, &pacedReader{r: bytes.NewReader(blob), piece: piece, pause: pause})
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("slow push: %d after %v", resp.StatusCode, time.Since(start))
				}

				start = time.Now()
				resp = do(http.MethodGet, base+"/v2/"+name+"/blobs/"+digest, nil)
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("pull: %d", resp.StatusCode)
				}
				h := sha256.New()
				n, err := io.Copy(h, &pacedReader{r: resp.Body, piece: piece, pause: pause})
				if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != digest[len("sha256:"):] {
					t.Fatalf("slow pull cut after %d of %d bytes, %v: %v", n, size, time.Since(start), err)
				}
			})
		}
	}
}
