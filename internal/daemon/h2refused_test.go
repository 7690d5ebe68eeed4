package daemon_test

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// h2Seq is an HTTP/2 connection that sends one request at a time and
// waits for its outcome.
type h2Seq struct {
	c   *tls.Conn
	fr  *http2.Framer
	dec *hpack.Decoder
	id  uint32
}

func dialH2Seq(t *testing.T, st *stack.Stack) *h2Seq {
	t.Helper()
	c, fr := dialH2(t, st, "team-a.nexmux.test")
	s := &h2Seq{c: c, fr: fr, dec: hpack.NewDecoder(4096, nil), id: 1}
	if err := s.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return s
}

// write sends one request's HEADERS and returns its stream id.
func (s *h2Seq) write(fields [][2]string) (uint32, error) {
	id := s.id
	s.id += 2
	return id, s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headerBlock(fields), EndStream: true, EndHeaders: true})
}

// do sends one request and returns its :status, "reset" for a
// RST_STREAM, or "closed" once the connection ended (GOAWAY or EOF)
// without answering it.
func (s *h2Seq) do(t *testing.T, fields [][2]string) string {
	t.Helper()
	id, err := s.write(fields)
	if err != nil {
		return "closed"
	}
	// Generous: a connection left open is what fails, not a slow answer.
	_ = s.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	status := ""
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("stream %d: no answer and the connection still open: %v", id, err)
			}
			return "closed"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = s.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			if f.LastStreamID < id {
				return "closed"
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return "reset"
			}
		case *http2.HeadersFrame:
			if f.StreamID != id {
				continue
			}
			hf, err := s.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hf {
				if h.Name == ":status" {
					status = h.Value
				}
			}
			if f.StreamEnded() {
				return status
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return status
			}
		}
	}
}

// closed reports whether the server ends the connection (EOF or a read
// error other than the deadline) within a generous deadline, reading
// past any GOAWAY.
func (s *h2Seq) closed() bool {
	_ = s.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		if _, err := s.fr.ReadFrame(); err != nil {
			var ne net.Error
			return !errors.As(err, &ne) || !ne.Timeout()
		}
	}
}

// Over HTTP/1 a request net/http cannot take (a malformed request line, a
// Transfer-Encoding it does not know) is answered and its connection
// closed. Over HTTP/2 net/http refuses such a request on its stream alone
// (RST_STREAM for a malformed :path, its own 400 for a connection-specific
// header), nexmux never sees it, and each one restarted --idle-timeout: a
// client held the connection for good with one every few seconds, none of
// them reaching Nexus. They count as nexmux's own refusals do: three in a
// row, nothing forwarded between, and the connection is closed.
func TestHTTP2RequestsNetHTTPRefusesCloseTheConnection(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	req := func(path string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host("team-a")}, {":path", path}, {"authorization", auth}}, extra...)
	}
	good := req("/v2/")
	badPath := req("v2/")                         // no leading slash: RST_STREAM
	badTE := req("/v2/", [2]string{"te", "gzip"}) // net/http's own 400
	refused := req("/service/rest/v1/status")     // nexmux's own 404

	s := dialH2Seq(t, st)
	if got := s.do(t, good); got != "200" {
		t.Fatalf("first request: %s, want 200", got)
	}
	// A request that reaches Nexus between them starts the count again:
	// refusals that are not three in a row never close the connection.
	for i, f := range [][][2]string{badPath, badTE, good, badTE, refused, good, badPath, badPath, good} {
		got := s.do(t, f)
		if got == "closed" {
			t.Fatalf("request %d: connection closed with fewer than three refusals in a row", i)
		}
	}
	// Refused by net/http alone, or mixed with nexmux's refusals, a few
	// in a row end the connection. (Two streams whose busy periods
	// touch may count once, hence up to ten.)
	for _, seq := range [][][][2]string{{badPath}, {badTE}, {badPath, refused, badTE}} {
		s := dialH2Seq(t, st)
		if got := s.do(t, good); got != "200" {
			t.Fatalf("first request: %s, want 200", got)
		}
		n := 0
		for ; n < 10; n++ {
			if s.do(t, seq[n%len(seq)]) == "closed" {
				break
			}
		}
		if n == 10 && !s.closed() {
			t.Errorf("%d requests refused in a row (sequence of %d kinds) and the connection is still open", n, len(seq))
			continue
		}
		t.Logf("closed; %d refused requests sent before the close was seen", n)
	}
}

// send writes one request's HEADERS and returns its stream id, without
// waiting for its outcome.
func (s *h2Seq) send(t *testing.T, fields [][2]string) uint32 {
	t.Helper()
	id, err := s.write(fields)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The close that the third refusal in a row starts waits a moment for
// net/http to flush its frames; a request the client sent meanwhile (it
// saw no GOAWAY: nothing told it to stop) reached Nexus and was cut with
// its connection, its answer never sent. Here it follows the third
// refused stream in the same write, so net/http takes it right after that
// stream's reset: Nexus answers it after 300 ms.
func TestHTTP2RequestAfterThirdRefusalNotCut(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes(), Nodes: 1})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	req := func(path string) [][2]string {
		return [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host("team-a")}, {":path", path}, {"authorization", auth}}
	}
	good, badPath := req("/v2/"), req("v2/")
	s := dialH2Seq(t, st)
	if got := s.do(t, good); got != "200" {
		t.Fatalf("first request: %s, want 200", got)
	}
	for i := range 2 {
		if got := s.do(t, badPath); got != "reset" {
			t.Fatalf("refused request %d: %s, want reset", i, got)
		}
	}
	st.NexusNodes[0].SetSlow(300*time.Millisecond, 0)
	s.send(t, badPath)
	if got := s.do(t, good); got != "200" {
		t.Fatalf("request sent right after the third refused one: %s, want 200 (its connection was cut under it)", got)
	}
}
