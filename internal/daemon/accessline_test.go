package daemon_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// One request with a path of tens of kilobytes gets an access line of about
// a kilobyte: the line names the length, not every byte.
func TestAccessLineOfLongPathIsShort(t *testing.T) {
	st, logs := logStack(t, teamRoutes())
	path := "/v2/" + strings.Repeat("a", 60000) + "/manifests/latest"
	if code := get(st, "team-a", path); code == 0 {
		t.Fatal("no answer")
	}
	line := waitLog(t, logs, "msg=request", "("+strconv.Itoa(len(path))+" bytes)")
	if len(line) > 2048 {
		t.Fatalf("access line of %d bytes", len(line))
	}
}

// A blob download cut because its client stopped reading (--send-timeout)
// must not log as a plain 200: the line is the operator's only record that
// the client got a truncated blob, so it says why in reason.
func TestCutDownloadAccessLineSaysWhy(t *testing.T) {
	cfg := teamRoutes()
	cfg.SendTimeout = 300 * time.Millisecond
	st, logs := logStack(t, cfg)
	dig := seedLayer(t, st, "team-a-hosted", "big", 32<<20)
	path := "/v2/big/blobs/" + dig

	t.Run("http1", func(t *testing.T) {
		raw, err := smallRcvDial(context.Background(), st.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{ServerName: "team-a." + stack.Domain, RootCAs: st.Pool(), NextProtos: []string{"http/1.1"}})
		defer c.Close()
		auth := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password)) + "\r\n"
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+st.Host("team-a")+"\r\n"+auth+"\r\n"); err != nil {
			t.Fatal(err)
		}
		// Reads nothing: the access line comes once the response is cut.
		line := waitLog(t, logs, "msg=request", "path="+path, "client=127.0.0.1:"+strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port))
		if !strings.Contains(line, "reason=") {
			t.Fatalf("download cut by --send-timeout logged without a reason: %s", line)
		}
	})
	t.Run("http2", func(t *testing.T) {
		tr := st.Transport()
		defer tr.CloseIdleConnections()
		resp := getBigBlob(t, st, tr, dig, 2)
		defer resp.Body.Close()
		// Reads nothing: the stream's window fills and the write waits.
		deadline := time.Now().Add(10 * time.Second)
		for len(logLines(logs, "msg=request", "path="+path)) < 2 {
			if time.Now().After(deadline) {
				t.Fatal("no access line 10 s after the client stopped reading (--send-timeout 300ms)")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if line := logLines(logs, "msg=request", "path="+path)[1]; !strings.Contains(line, "reason=") {
			t.Fatalf("download cut by --send-timeout logged without a reason: %s", line)
		}
	})
}
