package daemon_test

import (
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Uploads whose bodies are still coming when a second signal ends the
// drain are cut by nexmux: README Stop answers a request still waiting for
// the rest of its body 503 (Retry-After: 1). The client's connection
// closes as the one to Nexus does, and its body read failing first must
// not make it the 400 of a client's broken body, which clients do not
// retry and nexmux_requests_total counts as a client error (the ops
// audit saw status=400 for crane's PATCH).
func TestUploadsCutBySecondSignalAre503(t *testing.T) {
	cfg := teamRoutes()
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.DrainTimeout = time.Minute
	st, logs := logStack(t, cfg)
	maddr := st.Daemon.Addr("metrics").String()
	one := h1(st)
	const each = 3
	var wg sync.WaitGroup
	for _, tr := range []*http.Transport{st.Transport(), one} {
		for range each {
			cl := &http.Client{Transport: tr}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Bodies streaming for about 12 s, a chunk every 100 ms.
				slowPushGated(cl, "https://"+st.Host("team-a-push"), "cut/app", 8<<20, 100*time.Millisecond, nil)
			}()
		}
	}
	waitFor(t, "the uploads to stream", func() bool {
		return metric(metricsText(t, maddr), "nexmux_uploads_in_flight", map[string]string{"route": "team-a-push.nexmux.test"}) == 2*each
	})
	time.Sleep(300 * time.Millisecond) // some body bytes through each
	sig := make(chan os.Signal, 1)
	sig <- syscall.SIGTERM // the second signal, waiting as the drain begins
	st.Daemon.Stop(syscall.SIGTERM, sig)
	wg.Wait()
	lines := logLines(logs, "msg=request", "method=PUT")
	if len(lines) != 2*each {
		t.Fatalf("%d access lines for %d uploads cut: %q", len(lines), 2*each, lines)
	}
	for _, line := range lines {
		if !strings.Contains(line, " status=503 ") || !strings.Contains(line, "drain") {
			t.Errorf("upload cut by the second signal logged as: %s", line)
		}
	}
	if n := counterValue(t, st.Daemon, "nexmux_requests_total", map[string]string{"method": "PUT", "class": "4xx"}); n != 0 {
		t.Errorf("nexmux_requests_total counts %v uploads nexmux cut as client errors (4xx)", n)
	}
}
