package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// A request every node breaks on (each resets it before answering, as
// Nexus does when it gives up on a proxy repository's remote, or an
// answer it cannot build) is the request's, not a node's, as a 5xx every
// node gives is (TestHARepository5xxOnEveryNodeEjectsNone): 20 such reads
// ejected every node, and then every request of every client got "no
// Nexus node is reachable" for 10 s and up. A node that alone resets
// while another answers is still ejected.
func TestHAResetsOnEveryNodeEjectNone(t *testing.T) {
	serve := func(resetAll bool) rawServe {
		return func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
			io.Copy(io.Discard, r.Body)
			if resetAll || strings.HasSuffix(r.URL.Path, "/manifests/broken") {
				return false // no answer: the connection closes
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
			return true
		}
	}
	a, b := startRaw(t, serve(false)), startRaw(t, serve(false))
	addr, up := haProxy(t, io.Discard, 0, &haNode{addr: a.addr}, &haNode{addr: b.addr})
	for range 20 {
		if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/broken", nil); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("broken on every node: %s %s, want the 502", resp.Status, body)
			break
		}
	}
	if e := ejected(up.Set()); len(e) != 0 {
		t.Errorf("a request every node resets ejected %v", e)
	}
	if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("another request, which every node answers: %s %s", resp.Status, body)
	}

	bad, good := startRaw(t, serve(true)), startRaw(t, serve(false))
	addr, up = haProxy(t, io.Discard, 0, &haNode{addr: bad.addr}, &haNode{addr: good.addr})
	ejectWith(t, up, bad.addr, func(int) {
		if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("with one node resetting: %s %s", resp.Status, body)
		}
	})
}

// The one node a request can try breaking on it is the request's to bear,
// as a 5xx there is (TestHARepository5xxOnTheLastNodeEjectsNone): ejecting
// the last node for it would turn one broken request into every client's
// "no Nexus node is reachable".
func TestHAResetsOnTheLastNodeEjectNone(t *testing.T) {
	n := startRaw(t, func(c net.Conn, br *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/manifests/broken") {
			return false // no answer: the connection closes
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
		return true
	})
	addr, up := haProxy(t, io.Discard, 0, &haNode{addr: n.addr})
	for range 20 {
		if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/broken", nil); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("broken on the one node: %s %s, want the 502", resp.Status, body)
		}
	}
	if e := ejected(up.Set()); len(e) != 0 {
		t.Fatalf("a request the last node resets ejected %v", e)
	}
	if resp, body := send(t, addr, http.MethodGet, "/v2/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("another request: %s %s", resp.Status, body)
	}
}
