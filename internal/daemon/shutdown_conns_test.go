package daemon_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// connRelay relays TCP connections to target and counts those still open
// on the side nexmux connected from.
type connRelay struct {
	ln   net.Listener
	open atomic.Int64
	wg   sync.WaitGroup
}

func startConnRelay(t *testing.T, target string) *connRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &connRelay{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.open.Add(1)
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer r.open.Add(-1)
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

// Once Shutdown returns, nexmux holds no connection to Nexus: neither the
// proxy's keep-alive connections (before, they stayed open until their
// 20 s idle timeout) nor the health probes' (3 probe intervals).
func TestShutdownClosesUpstreamConns(t *testing.T) {
	var relays []*connRelay
	cfg := teamRoutes()
	// Long: the probes' keep-alive connections (from the round at start)
	// must be closed by Shutdown, not by their idle timeout (3 intervals).
	cfg.HealthInterval = 10 * time.Second
	st := stack.Start(t, stack.Options{Config: cfg, Upstreams: func(nexusURL string) []string {
		u, err := url.Parse(nexusURL)
		if err != nil {
			t.Fatal(err)
		}
		var urls []string
		for range 2 {
			r := startConnRelay(t, u.Host)
			relays = append(relays, r)
			urls = append(urls, "http://"+r.ln.Addr().String()+u.Path)
		}
		return urls
	}})
	open := func() int64 { return relays[0].open.Load() + relays[1].open.Load() }

	tr := st.Transport()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range 4 {
		resp, err := cl.Get("https://" + st.Host("team-a") + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	if open() == 0 {
		t.Fatal("no connection to Nexus was kept alive; the test proves nothing")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.Daemon.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); open() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to Nexus still open after Shutdown", open())
		}
	}
}
