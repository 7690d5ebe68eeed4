package daemon_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// TLS sessions across real reloads (files rewritten, polled): a reload
// that reads the same certificate files again keeps a name's sessions
// resuming; one whose file for the name was rewritten with a new
// certificate makes its next connection a full handshake with the new
// one, where a resumed session would show the client the old certificate
// for as long as crypto/tls honours the ticket (7 days).
func TestSessionResumesAcrossReloadUntilItsCertificateIsReplaced(t *testing.T) {
	ca, err := certs.NewCA("ticket reload CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, hosts ...string) (string, string) {
		return writePair(t, dir, name, func() (*certs.Pair, error) { return ca.Issue(hosts...) })
	}
	wc, wk := write("wildcard", "*.nexmux.test")
	ec, ek := write("exact", "special.nexmux.test")
	file := filepath.Join(dir, "nexmux.yaml")
	routes := "route:\n  - special.nexmux.test=team-a\n"
	writeFile(t, file, routes)
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: fastWatch}, ConfigFile: file, Config: config.Config{
		Cert: []string{wc, ec}, Key: []string{wk, ek},
	}})
	for _, ver := range []struct {
		name, tag string
		v         uint16
	}{{"TLS 1.2", "12", tls.VersionTLS12}, {"TLS 1.3", "13", tls.VersionTLS13}} {
		t.Run(ver.name, func(t *testing.T) {
			cfg := &tls.Config{ServerName: "special.nexmux.test", RootCAs: ca.Pool(), MinVersion: ver.v, MaxVersion: ver.v,
				ClientSessionCache: tls.NewLRUClientSessionCache(4), NextProtos: []string{"http/1.1"}}
			// dial makes a request (the TLS 1.3 ticket comes after the
			// handshake) and says whether it resumed, and the SANs of the
			// certificate the client holds for it.
			dial := func(cfg *tls.Config) (bool, []string, error) {
				c, err := tls.Dial("tcp", st.Addr, cfg)
				if err != nil {
					return false, nil, err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: "+cfg.ServerName+"\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 ") {
					t.Fatalf("response %q, %v", line, err)
				}
				cs := c.ConnectionState()
				return cs.DidResume, cs.PeerCertificates[0].DNSNames, nil
			}
			mustDial := func() (bool, []string) {
				t.Helper()
				did, names, err := dial(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return did, names
			}
			mustDial()
			if did, _ := mustDial(); !did {
				t.Fatal("no resumption before any reload")
			}
			// A reload that reads the same certificate files again: a new
			// route, served once the reload is done.
			route := "r" + ver.tag + ".nexmux.test"
			routes += "  - " + route + "=team-a\n"
			writeFile(t, file, routes)
			waitFor(t, "the reload adding "+route, func() bool {
				_, _, err := dial(&tls.Config{ServerName: route, RootCAs: ca.Pool(), MinVersion: ver.v, MaxVersion: ver.v})
				return err == nil
			})
			if did, _ := mustDial(); !did {
				t.Error("a reload reading the same certificate files ended the session")
			}
			// The name's certificate rewritten in place.
			renewed := "renewed-" + ver.tag + ".nexmux.test"
			p, err := ca.Issue("special.nexmux.test", renewed)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Write(ec, ek); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the new certificate", func() bool {
				_, names, err := dial(&tls.Config{ServerName: "special.nexmux.test", RootCAs: ca.Pool(), MinVersion: ver.v, MaxVersion: ver.v})
				return err == nil && slices.Contains(names, renewed)
			})
			if did, names := mustDial(); did || !slices.Contains(names, renewed) {
				t.Errorf("after the certificate was replaced: resumed %v, the client holds a certificate for %v; want a full handshake with the new one", did, names)
			}
			if did, names := mustDial(); !did || !slices.Contains(names, renewed) {
				t.Errorf("under the new certificate: resumed %v, certificate for %v", did, names)
			}
		})
	}
}
