package daemon_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// A reload that removes a registry from a mirror name is a removed route
// (issue 17 point 6): live connections on that name end, so they cannot go
// on pulling through the removed registry's repository. A mirror name the
// reload leaves as it was keeps its connections.
func TestReloadRevokesMirrorConnections(t *testing.T) {
	const kept = "mirror2.nexmux.test"
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	writeFile(t, file, "mirror:\n  - "+mirrorHost+"/docker.io=dockerhub-proxy\n  - "+mirrorHost+"/ghcr.io=ghcr-proxy\n  - "+kept+"/ghcr.io=ghcr-proxy\n")
	s := stack.Start(t, stack.Options{ConfigFile: file, Fixture: fixtures.Config{Repos: fixtures.MirrorRepos("")}})
	if err := s.Nexus.SeedMirrors(); err != nil {
		t.Fatal(err)
	}
	want := seeded(t, s, "ghcr-proxy", "acme/app:1")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(stack.User+":"+stack.Password))
	dial := func(sni string) (*tls.Conn, *bufio.Reader) {
		c, err := tls.Dial("tcp", s.Addr, &tls.Config{ServerName: sni, RootCAs: s.Pool(), NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatalf("%s: %v", sni, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c, bufio.NewReader(c)
	}
	head := func(c net.Conn, br *bufio.Reader, host string) (*http.Response, error) {
		io.WriteString(c, "HEAD /v2/acme/app/manifests/1?ns=ghcr.io HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: "+auth+"\r\n\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	changed, cbr := dial(mirrorHost)
	same, sbr := dial(kept)
	for _, c := range []struct {
		c    net.Conn
		br   *bufio.Reader
		host string
	}{{changed, cbr, mirrorHost}, {same, sbr, kept}} {
		if resp, err := head(c.c, c.br, c.host); err != nil || resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want {
			t.Fatalf("%s before the reload: %v %v", c.host, resp, err)
		}
	}

	writeFile(t, file, "mirror:\n  - "+mirrorHost+"/docker.io=dockerhub-proxy\n  - "+kept+"/ghcr.io=ghcr-proxy\n")
	if err := s.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	// The idle connection on the changed name is closed; were it not,
	// its next request would still reach ghcr-proxy.
	if resp, err := head(changed, cbr, mirrorHost); err == nil {
		t.Errorf("connection on %s still served after ghcr.io was removed from it: %d %s", mirrorHost, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("connection on %s neither closed nor answered: %v", mirrorHost, err)
	}
	if resp, err := head(same, sbr, kept); err != nil || resp.StatusCode != 200 || resp.Close {
		t.Errorf("unchanged mirror name %s after the reload: %v %v", kept, resp, err)
	}
}
