package l7

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// A resume started while the client was there goes on to no further node
// once the client has left: its download is for nobody.
func TestResumeStopsWhenClientLeaves(t *testing.T) {
	blob := []byte(strings.Repeat("0123456789abcdef", 8<<10))
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	roles := map[string]string{}
	ranged := make(chan string, 8)
	var ready = make(chan struct{})
	// B answers the resume once nexmux has seen the client leave, not
	// after a fixed time a loaded machine could take to see it.
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free)
	h := func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		<-ready
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		role := roles[local]
		if r.Header.Get("Range") != "" {
			ranged <- role
			if role == "B" {
				<-release
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			serveRange(w, r, blob)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		if role != "A" {
			w.Write(blob)
			return
		}
		w.Write(blob[:len(blob)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	nodes := []*haNode{startNode(t, h), startNode(t, h), startNode(t, h)}
	var urls []string
	for _, n := range nodes {
		urls = append(urls, "http://"+n.addr)
	}
	// The client's request context: done once nexmux saw the client leave.
	clientCtx, wrap := firstClientContext()
	addr, up := haProxyWrapped(t, io.Discard, 0, "team-a", Config{}, 50*time.Millisecond, wrap, urls...)
	ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest)
	for i, n := range ns {
		roles[n.Host] = string(rune('A' + i))
	}
	close(ready)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v2/app/blobs/%s HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n", digest)
	go io.Copy(io.Discard, c)
	select {
	case who := <-ranged:
		if who != "B" {
			t.Fatalf("first resume went to %s", who)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no resume")
	}
	c.Close() // the client leaves while B works on the resume
	select {
	case <-(<-clientCtx).Done():
	case <-time.After(10 * time.Second):
		t.Fatal("nexmux did not see the client leave")
	}
	free()
	select {
	case who := <-ranged:
		t.Fatalf("after the client left, the resume went on to node %s", who)
	case <-time.After(2 * time.Second):
	}
}
