package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// A manifest PUT buffered to be sent again (replay) has its body read
// whole before any node is tried: refused when every node is busy, it
// leaves nothing unread, so its HTTP/1 connection stays, as a bodiless
// request's does (refusal.close).
func TestBusyRefusalOfABufferedManifestPutKeepsTheConnection(t *testing.T) {
	release := make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/repository/") && r.Method == http.MethodGet {
			<-release
		}
	}
	a, b := startNode(t, h), startNode(t, h)
	addr, _ := haProxy(t, io.Discard, 1, a, b)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(t, addr, http.MethodGet, fmt.Sprintf("/v2/app/manifests/%d", i), nil)
		}()
	}
	waitUntil(t, "a GET held at each node", func() bool { return a.hits.Load() == 1 && b.hits.Load() == 1 })

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	manifest := `{"schemaVersion":2}`
	fmt.Fprintf(c, "PUT /v2/app/manifests/1 HTTP/1.1\r\nHost: team-a.example.com\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: %d\r\n\r\n%s", len(manifest), manifest)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "busy") {
		t.Fatalf("manifest PUT with every node busy: %s %s", resp.Status, body)
	}
	if resp.Close {
		t.Fatalf("a refused manifest PUT whose body was read whole ends its connection (Connection: close), want it kept")
	}
	if n := a.hits.Load() + b.hits.Load(); n != 2 {
		t.Fatalf("%d requests reached the nodes, want the 2 held GETs", n)
	}
}
