package l7

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An error page nexmux reads whole (to turn it into a Registry API error,
// or to hide the node's address in a JSON error or a redirect's page) is
// one read: a node that trickles one without end, a byte at a time within
// every read's timeout, gives the client its answer once that timeout has
// passed, with what came of the page by then, and has its request ended.
// Without a bound the client got no status line until 64 KiB had come.
func TestTrickledErrorPageIsBounded(t *testing.T) {
	shorten(t, &upstreamReadStallTimeout, 500*time.Millisecond)
	for _, c := range []struct {
		name, ctype, head string
		status            int
		path, words       string
	}{
		{"html page", "text/html", "<html><head><title>Repository offline</title>", http.StatusServiceUnavailable, "/v2/app/manifests/1", "Repository offline"},
		{"JSON error", "application/json", `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown`, http.StatusNotFound, "/v2/app/manifests/2", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			gone := make(chan struct{})
			a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
				if !strings.Contains(r.URL.Path, "/repository/") {
					return
				}
				w.Header().Set("Content-Type", c.ctype)
				w.WriteHeader(c.status)
				io.WriteString(w, c.head)
				w.(http.Flusher).Flush()
				defer close(gone)
				trickle(w, r)
			})
			addr, _ := haProxy(t, io.Discard, 0, a)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(teamRequest(addr, http.MethodGet, c.path, nil).WithContext(ctx))
			if err != nil {
				t.Fatalf("no answer: %v (client deadline passed: %v); want Nexus's %d as a Registry API error", err, ctx.Err() != nil, c.status)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct {
				Errors []struct{ Code, Message string }
			}
			if err != nil || resp.StatusCode != c.status || json.Unmarshal(b, &e) != nil || len(e.Errors) == 0 || !strings.Contains(e.Errors[0].Message, c.words) {
				t.Fatalf("%s %q (%v), want a %d Registry API error naming %q", resp.Status, b, err, c.status, c.words)
			}
			endsWithin10s(t, gone, "the trickling Nexus request is still open")
		})
	}
}

// A push token's answer, which nexmux reads whole to mark it, is one read
// too: trickled without end, it ends in an error once that read's timeout
// has passed, its Nexus request ended, not in a client left waiting.
func TestTrickledTokenAnswerIsBounded(t *testing.T) {
	shorten(t, &upstreamReadStallTimeout, 500*time.Millisecond)
	gone := make(chan struct{})
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/v2/token") {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"token":"DockerToken.0b1c0d36"`)
		w.(http.Flusher).Flush()
		defer close(gone)
		trickle(w, r)
	})
	addr, _ := haProxyURLs(t, io.Discard, 0, "pull:team-a,push:team-a-hosted", "http://"+node.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := teamRequest(addr, http.MethodGet, "/v2/token?account=u&scope=repository%3Aapp%3Apull%2Cpush&service=x", nil).WithContext(ctx)
	resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req)
	if err != nil {
		t.Fatalf("no answer: %v (client deadline passed: %v); want an error once the read timeout passed", err, ctx.Err() != nil)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("%s %q, want a 504: no whole token came in time", resp.Status, b)
	}
	endsWithin10s(t, gone, "the trickling Nexus request is still open")
}

// trickle sends a blank every 50 ms until the request ends: a Nexus page
// that never ends, each read from it within its timeout.
func trickle(w http.ResponseWriter, r *http.Request) {
	for {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := io.WriteString(w, " "); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}
