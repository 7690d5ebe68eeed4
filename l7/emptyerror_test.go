package l7

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// An error with no body whose length Nexus (Jetty, a front) did not give
// up front (chunked with only its last chunk, or read up to the close)
// is as empty as one with "Content-Length: 0": docker reported "error
// parsing HTTP 404 response body" for it. It reaches the client as a
// Registry API error, whatever its type; a HEAD's answer goes as it came.
func TestEmptyErrorsOfUnknownLengthBecomeRegistryErrors(t *testing.T) {
	var answer atomic.Value
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		a := answer.Load().(string)
		if r.Method == http.MethodHead {
			a, _, _ = strings.Cut(a, "\r\n\r\n")
			a += "\r\n\r\n"
		}
		io.WriteString(c, a)
		return !strings.Contains(a, "Connection: close")
	})
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	for _, c := range []struct {
		method string
		answer string
		code   string // "": as it came
	}{
		{http.MethodGet, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "NAME_UNKNOWN"},
		{http.MethodPut, "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "DENIED"},
		{http.MethodGet, "HTTP/1.1 500 Server Error\r\nConnection: close\r\n\r\n", "UNAVAILABLE"},
		{http.MethodGet, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "NAME_UNKNOWN"},
		{http.MethodHead, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n", ""},
		// A length of 0 however written.
		{http.MethodGet, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 00\r\n\r\n", "NAME_UNKNOWN"},
		{http.MethodGet, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/octet-stream\r\nContent-Length:  000 \r\n\r\n", "UNAUTHORIZED"},
	} {
		answer.Store(c.answer)
		resp, body := send(t, addr, c.method, "/v2/app/manifests/1", nil)
		status, _, _ := strings.Cut(strings.TrimPrefix(c.answer, "HTTP/1.1 "), " ")
		var e struct {
			Errors []struct{ Code, Message string }
		}
		switch {
		case fmt.Sprint(resp.StatusCode) != status:
			t.Errorf("%s answered %q: client got %s", c.method, c.answer, resp.Status)
		case c.code == "":
			if body != "" {
				t.Errorf("%s answered %q: client got body %q; want it as it came", c.method, c.answer, body)
			}
		case resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != c.code:
			t.Errorf("%s answered %q: client got Content-Type %q, body %q; want a JSON %s error", c.method, c.answer, resp.Header.Get("Content-Type"), body, c.code)
		}
	}
}

// Telling an empty body of unknown length from one that is not waits for
// its first byte only: an error body that streams (its end long after its
// start) reaches the client as it comes, not once it ended.
func TestErrorBodyOfUnknownLengthStreams(t *testing.T) {
	more := make(chan struct{})
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 500 Server Error\r\nTransfer-Encoding: chunked\r\n\r\n4\r\noops\r\n")
		select {
		case <-more:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(c, "4\r\nmore\r\n0\r\n\r\n")
		return true
	})
	addr, _ := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(teamRequest(addr, http.MethodGet, "/v2/app/manifests/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 4)
	start := time.Now()
	_, err = io.ReadFull(resp.Body, first)
	close(more)
	if err != nil || string(first) != "oops" || time.Since(start) > 5*time.Second {
		t.Fatalf("first bytes %q, %v after %v; want Nexus's first chunk at once", first, err, time.Since(start))
	}
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "more" || resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("%s, rest %q; want Nexus's 500 and its body as it came", resp.Status, rest)
	}
}
