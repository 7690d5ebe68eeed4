package daemon_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// Over HTTP/2 a client that stops reading does not block a socket write: it
// stops opening the stream's flow-control window, and the handler's write
// waits for window instead. --send-timeout bounds that wait too: the stream
// is reset and its Nexus connection let go, while the client's connection
// (and its other streams) stays.
func TestHTTP2ClientThatStopsReadingIsCut(t *testing.T) {
	cfg := teamRoutes()
	cfg.SendTimeout = 300 * time.Millisecond
	st := stack.Start(t, stack.Options{Config: cfg})
	img, err := random.Image(32<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.Seed("team-a-hosted", "big", "1", img); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	dig, _ := layers[0].Digest()
	cl := &http.Client{Transport: st.Transport()}
	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, "https://"+st.Host("team-a")+path, nil)
		req.SetBasicAuth(stack.User, stack.Password)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s over %s", path, resp.Status, resp.Proto)
		}
		return resp
	}
	resp := get("/v2/big/blobs/" + dig.String())
	defer resp.Body.Close()
	// Read nothing for well past the timeout: the client's stream window
	// (4 MiB) fills and nexmux's write waits.
	time.Sleep(2 * time.Second)
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= 32<<20 {
		t.Fatalf("read %d bytes, %v: want the stream reset short of the 32 MiB blob", n, err)
	}
	// The same connection still serves.
	ok := get("/v2/")
	ok.Body.Close()
}
