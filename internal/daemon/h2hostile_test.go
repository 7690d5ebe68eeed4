package daemon_test

import (
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// h2Exchange opens an HTTP/2 connection for sni and sends one request
// made of fields exactly as given (pseudo-headers included, so :path and
// :authority carry what no HTTP/2 client library would send). It returns
// the answer's :status, or "reset" when the stream or connection was
// refused without one.
func h2Exchange(t *testing.T, st *stack.Stack, sni string, fields [][2]string) string {
	t.Helper()
	c, fr := dialH2(t, st, sni)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(fields), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no answer within the deadline (hang): %v", err)
			}
			return "reset"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return "reset"
			}
		case *http2.GoAwayFrame:
			if f.LastStreamID < 1 {
				return "reset"
			}
		case *http2.HeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			hf, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hf {
				if h.Name == ":status" {
					return h.Value
				}
			}
		}
	}
}

// TestConfinementOverHTTP2 is TestConfinementTable's point over HTTP/2,
// where :path and :authority are not parsed as a request line and a Host
// header may stand beside :authority: dot segments in every encoding,
// backslashes, absolute and asterisk forms, CONNECT, another team's
// repository, and a connection opened for team-a naming team-b (the
// coalescing of a wildcard certificate's names) never reach Nexus outside
// team-a's registry API, nor with another Host.
func TestConfinementOverHTTP2(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	hostA, hostB := st.Host("team-a"), st.Host("team-b")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	req := func(method, authority, path string, extra ...[2]string) [][2]string {
		f := [][2]string{{":method", method}, {":scheme", "https"}}
		if authority != "" {
			f = append(f, [2]string{":authority", authority})
		}
		if path != "" {
			f = append(f, [2]string{":path", path})
		}
		return append(append(f, [2]string{"authorization", auth}), extra...)
	}
	cases := []struct {
		name   string
		sni    string // default team-a
		fields [][2]string
		want   string // exact :status, or "4xx" for any refusal
		reach  bool   // benign: must reach Nexus
	}{
		{name: "benign /v2/", fields: req("GET", hostA, "/v2/"), want: "200", reach: true},
		{name: "benign own repository prefix", fields: req("GET", hostA, "/repository/team-a-hosted/v2/"), want: "200", reach: true},
		{name: "dot segments", fields: req("GET", hostA, "/v2/../service/rest/v1/status"), want: "400"},
		{name: "dot segments after double slash", fields: req("GET", hostA, "/v2//../../repository/team-b/v2/"), want: "400"},
		{name: "encoded dots and slash", fields: req("GET", hostA, "/v2/%2e%2e%2fservice/rest/v1/status"), want: "400"},
		{name: "double-encoded dots", fields: req("GET", hostA, "/v2/%252e%252e/service/rest/v1/status"), want: "400"},
		{name: "Jetty path parameter", fields: req("GET", hostA, "/v2/..;/service/rest/v1/status"), want: "400"},
		{name: "encoded path parameter", fields: req("GET", hostA, "/v2/x%3b/tags/list"), want: "400"},
		{name: "backslashes", fields: req("GET", hostA, `/v2/..\service\rest`), want: "400"},
		{name: "space in :path", fields: req("GET", hostA, "/v2/x y/tags/list"), want: "4xx"},
		{name: "fragment hiding dots", fields: req("GET", hostA, "/v2/a#/../../service/rest/v1/status"), want: "400"},
		{name: "absolute-form :path", fields: req("GET", hostA, "http://127.0.0.1:8081/service/rest/v1/status"), want: "4xx"},
		{name: "asterisk :path", fields: req("OPTIONS", hostA, "*"), want: "4xx"},
		{name: "no leading slash", fields: req("GET", hostA, "v2/"), want: "4xx"},
		{name: "CONNECT to Nexus", fields: req("CONNECT", "127.0.0.1:8081", ""), want: "4xx"},
		{name: "other team's repository", fields: req("GET", hostA, "/repository/team-b/v2/"), want: "404"},
		{name: "double slash to REST", fields: req("GET", hostA, "//service/rest/v1/status"), want: "404"},
		{name: "REST API", fields: req("GET", hostA, "/service/rest/v1/status"), want: "404"},
		{name: "coalesced :authority team-b", fields: req("GET", hostB, "/v2/"), want: "421"},
		{name: "coalesced :authority team-b, upper case, trailing dot", fields: req("GET", "TEAM-B.NEXMUX.TEST.", "/v2/"), want: "421"},
		{name: "coalesced :authority team-b with team-a's path", fields: req("GET", hostB, "/repository/team-a-hosted/v2/"), want: "421"},
		{name: "Host team-b instead of :authority", fields: req("GET", "", "/v2/", [2]string{"host", hostB}), want: "421"},
		{name: ":authority naming Nexus", fields: req("GET", "127.0.0.1:8081", "/v2/"), want: "421"},
		{name: ":authority with userinfo", fields: req("GET", "x@"+hostB, "/v2/"), want: "4xx"},
		{name: "SNI team-b, :authority team-a", sni: "team-b.nexmux.test", fields: req("GET", hostA, "/v2/"), want: "421"},
		// What HPACK carries that no request line can, and spellings
		// TestConfinementTable has over HTTP/1.1 only.
		{name: "benign path in the query", fields: req("GET", hostA, "/v2/?x=/../../service/rest/v1/status"), want: "200", reach: true},
		{name: "Jetty 9 %u dots", fields: req("GET", hostA, "/v2/%u002e%u002e/service/rest/v1/status"), want: "4xx"},
		{name: "overlong UTF-8 dots", fields: req("GET", hostA, "/v2/%c0%ae%c0%ae/service/rest/v1/status"), want: "400"},
		{name: "raw non-ASCII in :path", fields: req("GET", hostA, "/v2/\u00e9/tags/list"), want: "400"},
		{name: "DEL in :path", fields: req("GET", hostA, "/v2/a\x7f/tags/list"), want: "4xx"},
		{name: "CR LF in :path", fields: req("GET", hostA, "/v2/a\r\nHost: x/../../service"), want: "4xx"},
		{name: "NUL in :path", fields: req("GET", hostA, "/v2/a\x00/../../service"), want: "4xx"},
		{name: "empty :path", fields: [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", hostA}, {":path", ""}, {"authorization", auth}}, want: "4xx"},
		{name: "second :path to REST", fields: [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", hostA}, {":path", "/v2/"}, {":path", "/service/rest/v1/status"}, {"authorization", auth}}, want: "4xx"},
		{name: "extended CONNECT", fields: [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", hostA}, {":path", "/v2/"}, {"authorization", auth}}, want: "4xx"},
		{name: ":scheme http, :authority team-b", fields: [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", hostB}, {":path", "/v2/"}, {"authorization", auth}}, want: "421"},
		{name: "encoded repository name", fields: req("GET", hostA, "/repository/team-a%2dhosted/v2/"), want: "404"},
		{name: "other team's doubled token path", fields: req("GET", hostA, "/repository/team-a/repository/team-b/v2/token"), want: "404"},
	}
	var reached, refused int
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sni := tc.sni
			if sni == "" {
				sni = "team-a.nexmux.test"
			}
			st.Nexus.ResetRequests()
			got := h2Exchange(t, st, sni, tc.fields)
			switch {
			case tc.want == "4xx":
				if got != "reset" && (len(got) != 3 || got[0] != '4') {
					t.Errorf("got %s, want a 4xx or a refused stream", got)
				}
			case got != tc.want:
				t.Errorf("got %s, want %s", got, tc.want)
			}
			log := st.Nexus.Requests()
			for _, r := range log {
				if !allowedUpstream(r) {
					t.Errorf("reached Nexus outside team-a's registry API: %s %s (path %q, repo %q, host %q)", r.Method, r.RawPath, r.Path, r.Repo, r.Host)
				}
				if !strings.EqualFold(r.Host, hostA) {
					t.Errorf("reached Nexus with Host %q", r.Host)
				}
			}
			if tc.reach {
				if len(log) == 0 {
					t.Error("benign request never reached Nexus")
				}
				reached++
			} else {
				if len(log) != 0 {
					t.Errorf("nexmux forwarded %d request(s) it should have refused: first %s %s", len(log), log[0].Method, log[0].RawPath)
				}
				refused++
			}
			t.Logf("%s, %d upstream request(s)", got, len(log))
		})
	}
	if reached == 0 || refused < 20 {
		t.Fatalf("ran %d benign and %d refused cases", reached, refused)
	}
	// Both :authority and a Host header: one of them is the request's
	// Host, and what Nexus sees is what nexmux judged.
	st.Nexus.ResetRequests()
	got := h2Exchange(t, st, "team-a.nexmux.test", req("GET", hostA, "/v2/", [2]string{"host", hostB}))
	for _, r := range st.Nexus.Requests() {
		if !strings.EqualFold(r.Host, hostA) {
			t.Errorf(":authority team-a with Host team-b answered %s and reached Nexus with Host %q", got, r.Host)
		}
	}
}

// TestHTTP2AuthorityNexusWouldNotGet: HTTP/2 takes bytes in :authority
// that no Host header may hold ('{', '"', '<', '^', '|'). Go's transport
// would send Nexus an empty Host instead, and Nexus builds the realm and
// Locations from its own address then, the very thing the refusal of a
// missing Host prevents. Where the Host is not matched against a route
// (the no-SNI default route here), nexmux must refuse it itself.
func TestHTTP2AuthorityNexusWouldNotGet(t *testing.T) {
	cfg := confinedRoutes()
	cfg.DefaultRoute = "team-a"
	st := stack.Start(t, stack.Options{Config: cfg})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	for _, authority := range []string{"registry{}", `a"b`, "a<b>", "a^b", "a|b", "a`b", "registry{}:443"} {
		st.Nexus.ResetRequests()
		got := h2Exchange(t, st, "127.0.0.1", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", "/v2/"}, {"authorization", auth}})
		if got != "400" && got != "reset" {
			t.Errorf(":authority %q: %s, want 400", authority, got)
		}
		for _, r := range st.Nexus.Requests() {
			t.Errorf(":authority %q reached Nexus with Host %q", authority, r.Host)
		}
	}
	// The benign IP-literal form still reaches Nexus with its Host.
	st.Nexus.ResetRequests()
	authority := "127.0.0.1:" + itoa(st.Port)
	if got := h2Exchange(t, st, "127.0.0.1", [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", "/v2/"}, {"authorization", auth}}); got != "200" {
		t.Errorf(":authority %q: %s, want 200", authority, got)
	}
	if reqs := st.Nexus.Requests(); len(reqs) != 1 || reqs[0].Host != authority {
		t.Errorf("benign request reached Nexus as %+v", reqs)
	}
}

// TestHTTP2HeaderListOverLimitNeverReachesNexus: a header list over the
// 64 KiB limit never reaches Nexus over HTTP/2 either. Made small on the
// wire by HPACK (one field indexed, then named again by its index a
// hundred times), net/http's HTTP/2 server answers it with its own 431,
// an HTML page nexmux never sees (HTTP/1's 431 is a Registry-API JSON
// error). Sent as it is, it ends the connection (net/http's framer).
func TestHTTP2HeaderListOverLimitNeverReachesNexus(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: confinedRoutes()})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	base := [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", st.Host("team-a")}, {":path", "/v2/"}, {"authorization", auth}}
	same := base
	for range 100 {
		same = append(same, [2]string{"x-same", strings.Repeat("b", 1000)})
	}
	st.Nexus.ResetRequests()
	if got := h2Exchange(t, st, "team-a.nexmux.test", same); got != "431" {
		t.Errorf("indexed by HPACK: %s, want 431", got)
	}
	for _, r := range st.Nexus.Requests() {
		t.Errorf("indexed by HPACK: reached Nexus: %s %s", r.Method, r.RawPath)
	}
}
