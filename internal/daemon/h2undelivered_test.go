package daemon_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net/http"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// shutH2Conn is an HTTP/2 connection from 127.0.0.1 whose client never
// opens a flow-control window: every answer's HEADERS arrive, no DATA can.
// It records each stream's outcome: its :status, or "reset".
type shutH2Conn struct {
	c        *tls.Conn
	mu       sync.Mutex
	wmu      sync.Mutex
	fr       *http2.Framer
	outcome  map[uint32]string
	goneFrom uint32 // streams above a GOAWAY's last stream ID (0: none)
}

func dialShutH2(t *testing.T, st *stack.Stack) *shutH2Conn {
	t.Helper()
	c, fr := dialH2(t, st, "team-a.nexmux.test")
	s := &shutH2Conn{c: c, fr: fr, outcome: map[uint32]string{}}
	if err := s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	go s.read()
	return s
}

func (s *shutH2Conn) read() {
	readH2Frames(s.fr, &s.wmu, &s.mu, func(f http2.Frame, dec *hpack.Decoder) {
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			s.outcome[f.StreamID] = "reset"
		case *http2.GoAwayFrame:
			s.goneFrom = f.LastStreamID + 1
		case *http2.HeadersFrame:
			hf, _ := dec.DecodeFull(f.HeaderBlockFragment())
			for _, h := range hf {
				if h.Name == ":status" {
					s.outcome[f.StreamID] = h.Value
				}
			}
		}
	})
}

// get opens streams 1, 3, ... (n of them), each a GET /v2/ with credentials.
func (s *shutH2Conn) get(t *testing.T, st *stack.Stack, n int) {
	t.Helper()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for i := range n {
		hb := headerBlock([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host("team-a")}, {":path", "/v2/"}, {"authorization", auth}})
		if err := s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb, EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
}

// settled reports the outcomes once each of the n streams has one (or
// was left out by a GOAWAY).
func (s *shutH2Conn) settled(n int) (map[string]int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	count := map[string]int{}
	for i := range n {
		id := uint32(2*i + 1)
		o, ok := s.outcome[id]
		if !ok && s.goneFrom != 0 && id >= s.goneFrom {
			o, ok = "not served", true
		}
		if !ok {
			return nil, false
		}
		count[o]++
	}
	return count, true
}

// An HTTP/2 answer its client never takes (its flow-control window kept
// shut) is a request in flight until it is delivered or cut by
// --send-timeout: net/http's handler goroutine, its buffers and the
// stream are held meanwhile. So --max-requests-per-client counts it, and
// the refusals of one client that are still undelivered are bounded too:
// beyond as many as its requests in flight, a stream is reset. Otherwise
// one address holds 100 streams on each of its --max-conns-per-client
// connections (~2 MiB a connection) for a minute at a time.
func TestHTTP2UndeliveredAnswersCountPerClient(t *testing.T) {
	const limit = 4
	// limit answers from Nexus, none of them delivered.
	st := heldAnswersStack(t, limit)
	// Those requests are still in flight: the same address is refused.
	cl := &http.Client{Transport: transportFrom(st, "127.0.0.1")}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "https://"+st.Host("team-a")+"/v2/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a request while %d answers to the same address are undelivered: %d, want 429", limit, resp.StatusCode)
	}

	// Refusals nobody reads: two a connection (a third in a row would end
	// the connection), over ten connections.
	const conns, each = 10, 2
	var shut []*shutH2Conn
	for range conns {
		s := dialShutH2(t, st)
		s.get(t, st, each)
		shut = append(shut, s)
	}
	total := map[string]int{}
	waitFor(t, "every refused stream's outcome", func() bool {
		clear(total)
		for _, s := range shut {
			got, ok := s.settled(each)
			if !ok {
				return false
			}
			for k, v := range got {
				total[k] += v
			}
		}
		return true
	})
	if total["429"] > limit {
		t.Errorf("outcomes of %d streams refused while %d answers were undelivered: %v; want at most %d undelivered 429s, the rest reset",
			conns*each, limit, total, limit)
	}
	if total["429"]+total["reset"] != conns*each {
		t.Errorf("outcomes: %v, want only 429s and resets", total)
	}
}

// heldAnswersStack starts a stack with --max-requests-per-client limit and
// has 127.0.0.1 hold limit answers from Nexus it never takes (its HTTP/2
// window shut): requests in flight until --send-timeout.
func heldAnswersStack(t *testing.T, limit int) *stack.Stack {
	t.Helper()
	cfg := teamRoutes()
	cfg.MaxRequestsPerClient = limit
	cfg.MaxConnsPerClient = 64
	st := stack.Start(t, stack.Options{Config: cfg})
	held := dialShutH2(t, st)
	held.get(t, st, limit)
	waitFor(t, "the held streams' answers", func() bool {
		got, ok := held.settled(limit)
		return ok && got["200"] == limit
	})
	return st
}
