package l7

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// With --max-requests-per-client 0 no per-client place is counted, so an
// HTTP/2 answer has nothing to hold until delivered: it must go out as
// before, its small body and END_STREAM in one DATA frame, not flushed
// early (a second, empty DATA frame and a wait on the connection's writer
// for every answer, which bound nothing).
func TestH2AnswerNotFlushedEarlyWithoutLimits(t *testing.T) {
	manifest := `{"schemaVersion":2}`
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		io.WriteString(w, manifest)
	})
	addr, _ := haProxy(t, io.Discard, 0, node)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fr := http2.NewFramer(c, c)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "team-a.example.com"}, {":path", "/v2/app/manifests/1"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var frames []string
	var body []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %v: %v", frames, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
			continue
		case *http2.HeadersFrame:
			frames = append(frames, "HEADERS")
			if f.StreamEnded() {
				t.Fatalf("no body: %v", frames)
			}
			continue
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			frames = append(frames, "DATA")
			if !f.StreamEnded() {
				continue
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("reset after %v", frames)
		default:
			continue
		}
		break
	}
	if string(body) != manifest {
		t.Fatalf("body %q", body)
	}
	if len(frames) != 2 {
		t.Errorf("frames %v; want HEADERS and one DATA ending the stream", frames)
	}
}
