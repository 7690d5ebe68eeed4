package mux_test

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"
)

// Every HTTP/1 connection, TLS or a port route's plain HTTP, gives the
// HTTP stage its send deadline below TLS (l7.ConnInfo.Sends): without it
// --send-timeout falls back on net/http's absolute write deadline and
// cuts a client that reads slowly but never stops.
func TestHTTP1ConnectionsHaveSendDeadline(t *testing.T) {
	m := startMuxWith(t, muxConfig{ports: []string{"8082=team-a"}})
	for _, d := range h1Dials(t, m) {
		t.Run(d.name, func(t *testing.T) {
			c := d.dial(t)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "GET /sends HTTP/1.1\r\nHost: team-a.nexmux.test\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "true" {
				t.Fatalf("ConnInfo.Sends set: %q, want true", body)
			}
		})
	}
}
