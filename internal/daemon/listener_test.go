package daemon_test

// One listener per port: a second process cannot bind the address nexmux
// listens on, so handshakes never split between two of them.

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// TestSecondListenerOnSamePortFails: a second nexmux (or anything) cannot
// bind the address a running one listens on, so handshakes never split
// between two processes; the first keeps serving every connection.
func TestSecondListenerOnSamePortFails(t *testing.T) {
	bound := freePort(t)
	cfg := teamRoutes()
	cfg.Port = []string{fmt.Sprintf("%d=team-a", bound)}
	cfg.BindPorts = true
	st, _ := logStack(t, cfg)

	second := func(listen string, bindPorts bool) error {
		c := *st.Runtime.Config
		c.Listen = listen
		c.BindPorts = bindPorts
		return startOnce(t, c)
	}
	port := strconv.Itoa(st.Port)
	for _, tc := range []struct {
		listen    string
		bindPorts bool
		want      string
	}{
		{st.Addr, false, "listen " + st.Addr},
		{":" + port, false, "listen :" + port},
		{"127.0.0.1:0", true, fmt.Sprintf("bind port %d", bound)},
	} {
		err := second(tc.listen, tc.bindPorts)
		if err == nil {
			t.Fatalf("a second daemon bound --listen %s (bind-ports %v)", tc.listen, tc.bindPorts)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("second daemon on %s: %v, want %q and address already in use", tc.listen, err, tc.want)
		}
	}
	reusePortRefused(t, st.Addr)

	// Every handshake still lands on the one listener.
	for i := 0; i < 40; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", st.Addr,
			&tls.Config{ServerName: "team-a.nexmux.test", RootCAs: st.Pool()})
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		c.Close()
	}
	if status := get(st, "team-a", "/v2/"); status != http.StatusUnauthorized {
		t.Fatalf("GET /v2/ after the failed second start: %d", status)
	}
}

// Every listener that cannot be bound is named in one start, not the first
// alone: an operator who fixed --listen would otherwise learn of
// --metrics-listen at the next start. What was bound is released.
func TestEveryListenerThatCannotBindIsNamed(t *testing.T) {
	bound := freePort(t)
	cfg := teamRoutes()
	cfg.Port = []string{fmt.Sprintf("%d=team-a", bound)}
	cfg.BindPorts = true
	st, _ := logStack(t, cfg)
	taken := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.Addr().String()
	}
	c := *st.Runtime.Config
	c.Listen = "127.0.0.1:" + strconv.Itoa(st.Port) // taken by st
	c.Socks5Listen, c.MetricsListen = "127.0.0.1:"+strconv.Itoa(freePort(t)), taken()
	err := startOnce(t, c)
	if err == nil {
		t.Fatal("started with every address taken")
	}
	for _, want := range []string{"listen " + c.Listen, fmt.Sprintf("bind port %d", bound), "metrics-listen " + c.MetricsListen} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "socks5-listen") {
		t.Errorf("the free --socks5-listen named:\n%v", err)
	}
	// The one that was bound is free again.
	ln, err := net.Listen("tcp", c.Socks5Listen)
	if err != nil {
		t.Fatalf("--socks5-listen %s still bound after the failed start: %v", c.Socks5Listen, err)
	}
	ln.Close()
}

// startOnce starts a daemon of c beside the test's own and shuts it down
// again if it started: what its Start said.
func startOnce(t *testing.T, c config.Config) error {
	t.Helper()
	b, err := c.Build()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	d, err := daemon.New(b, daemon.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err = d.Start(); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	}
	return err
}
