package daemon_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// Every label value of nexmux's series comes from the configuration or a
// fixed set: clients choose server names under a wildcard, Host headers,
// methods, paths and queries, and each new value they could make a label
// would be a new series held for good. A second round of requests with
// values never seen before adds no series.
func TestMetricsSeriesDoNotGrowWithWhatClientsSend(t *testing.T) {
	cfg := config.Config{
		Route:         []string{"*." + stack.Domain + "=team-a", "team-b." + stack.Domain + "=team-b"},
		DefaultRoute:  "team-a",
		MetricsListen: "127.0.0.1:0",
	}
	st := stack.Start(t, stack.Options{Config: cfg})
	series := func() map[string]bool {
		resp, err := http.Get("http://" + st.Daemon.Addr("metrics").String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		s := map[string]bool{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "nexmux_") {
				s[l[:strings.LastIndexByte(l, ' ')]] = true
			}
		}
		return s
	}
	methods := []string{"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"}
	round := func(r int) {
		for i := range 40 {
			sni := fmt.Sprintf("r%d-%d.%s", r, i, stack.Domain)
			if i%4 == 0 {
				sni = "" // no SNI: the default route
			}
			c, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: st.Pool(), InsecureSkipVerify: sni == "", NextProtos: []string{"http/1.1"}})
			br := bufio.NewReader(tc)
			host := sni
			if host == "" {
				host = "127.0.0.1"
			}
			for j := range 4 {
				m := methods[(i+j)%len(methods)]
				if j == 3 {
					m = fmt.Sprintf("M%dX%d", r, i) // a method nobody uses
				}
				fmt.Fprintf(tc, "%s /v2/r%d/i%d/manifests/t%d?token=x%d HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", m, r, i, j, i, host)
				resp, err := http.ReadResponse(br, &http.Request{Method: m})
				if err != nil {
					t.Fatalf("%s %s: %v", sni, m, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			tc.Close()
		}
		// A client at the TLS stage: unknown names and an ALPN nobody speaks.
		for i := range 10 {
			c, err := net.DialTimeout("tcp", st.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_ = tls.Client(c, &tls.Config{ServerName: fmt.Sprintf("r%d-%d.elsewhere.test", r, i), NextProtos: []string{fmt.Sprintf("p%d", i)}}).Handshake()
			c.Close()
		}
	}
	round(1)
	first := series()
	round(2)
	var grown []string
	for s := range series() {
		if !first[s] {
			grown = append(grown, s)
		}
	}
	if len(grown) > 0 {
		t.Errorf("%d new series after a second round of new names, methods and paths, such as %q", len(grown), grown[0])
	}
}
