package daemon_test

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures/certs"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// Several --cert/--key pairs: the certificate is chosen by SNI among the
// SANs, an exact name beats a wildcard, the first pair serves clients
// without SNI, and a certificate file rewritten in place is served to new
// connections after the reload.
func TestCertificateChosenBySNIAndReloaded(t *testing.T) {

	ca, err := certs.NewCA("certs test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, hosts ...string) (string, string) {
		return writePair(t, dir, name, func() (*certs.Pair, error) { return ca.Issue(hosts...) })
	}
	wc, wk := write("wildcard", "*.nexmux.test", "127.0.0.1")
	ec, ek := write("exact", "special.nexmux.test")
	oc, ok := write("other", "*.other.test")
	file := filepath.Join(dir, "nexmux.yaml")
	writeFile(t, file, "route:\n  - team-a.nexmux.test=team-a\n  - special.nexmux.test=team-b\n  - x.other.test=team-b\ndefault-route: team-a\n")
	st := stack.Start(t, stack.Options{Daemon: daemon.Options{WatchInterval: fastWatch}, ConfigFile: file, Config: config.Config{
		Cert: []string{wc, ec, oc}, Key: []string{wk, ek, ok},
	}})

	served := func(serverName string) []string {
		t.Helper()
		cfg := &tls.Config{ServerName: serverName, RootCAs: ca.Pool()}
		if serverName == "" {
			cfg.ServerName = "127.0.0.1" // an IP literal: Go sends no SNI
		}
		c, err := tls.Dial("tcp", st.Addr, cfg)
		if err != nil {
			t.Fatalf("SNI %q: %v", serverName, err)
		}
		defer c.Close()
		leaf := c.ConnectionState().PeerCertificates[0]
		return append(leaf.DNSNames, leaf.Subject.CommonName)
	}
	for _, tc := range []struct{ sni, want string }{
		{"team-a.nexmux.test", "*.nexmux.test"},
		{"special.nexmux.test", "special.nexmux.test"},
		{"SPECIAL.nexmux.test", "special.nexmux.test"},
		{"x.other.test", "*.other.test"},
		{"", "*.nexmux.test"},
	} {
		if got := served(tc.sni); !slices.Contains(got, tc.want) {
			t.Errorf("SNI %q got a certificate for %v, want %s", tc.sni, got, tc.want)
		}
	}

	// Renew the exact certificate in place (new serial, same file names).
	before := served("special.nexmux.test")
	p, err := ca.Issue("special.nexmux.test", "renewed.nexmux.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Write(ec, ek); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewed certificate", func() bool {
		return slices.Contains(served("special.nexmux.test"), "renewed.nexmux.test")
	})
	if slices.Contains(before, "renewed.nexmux.test") {
		t.Fatal("the test cannot tell the certificates apart")
	}
}

// A renewal given beside the old pair before it is valid is served once it
// becomes valid, with no reload (nothing watches a file that does not
// change), and the expiring pair it replaces draws no more warnings.
func TestCertificateBecomingValidIsServedWithoutReload(t *testing.T) {
	ca, err := certs.NewCA("certs test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, from, to time.Time) (string, string) {
		return writePair(t, dir, name, func() (*certs.Pair, error) {
			return ca.IssueBetween(from, to, "*.nexmux.test", name+".nexmux.test")
		})
	}
	now := time.Now()
	oc, ok := write("old", now.Add(-time.Hour), now.Add(24*time.Hour))
	nc, nk := write("renewed", now.Add(2*time.Second), now.Add(90*24*time.Hour))
	cfg := teamRoutes()
	cfg.Cert, cfg.Key = []string{oc, nc}, []string{ok, nk}
	st, logs := logStack(t, cfg)

	served := func() []string {
		t.Helper()
		c, err := tls.Dial("tcp", st.Addr, &tls.Config{ServerName: "team-a.nexmux.test", RootCAs: ca.Pool()})
		if err != nil {
			return nil // the renewal before it is valid: refused by the client
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].DNSNames
	}
	if got := served(); !slices.Contains(got, "old.nexmux.test") {
		t.Fatalf("served %v at start, want the old pair (the renewal is not valid yet)", got)
	}
	if len(logLines(logs, "certificate for", "old.nexmux.test", "expires on")) == 0 {
		t.Fatalf("no warning at start for the pair expiring within a day:\n%s", logs.String())
	}
	waitFor(t, "the renewal to be served", func() bool { return slices.Contains(served(), "renewed.nexmux.test") })
	if n := len(logLines(logs, "reloaded")); n != 0 {
		t.Fatalf("%d reloads: the renewal should be chosen without one", n)
	}
}

// writePair writes the pair issue makes as dir/name.crt and dir/name.key.
func writePair(t *testing.T, dir, name string, issue func() (*certs.Pair, error)) (crt, key string) {
	t.Helper()
	p, err := issue()
	if err != nil {
		t.Fatal(err)
	}
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := p.Write(crt, key); err != nil {
		t.Fatal(err)
	}
	return crt, key
}

// A certificate naming only IP addresses serves --default-route, the route
// of clients that connect by IP and so send no SNI: check and serve refused
// it as "no certificate", a certificate being given, since only DNS names
// were counted.
func TestIPOnlyCertificateServesDefaultRoute(t *testing.T) {
	ca, err := certs.NewCA("ip-only test CA")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := writePair(t, t.TempDir(), "ip", func() (*certs.Pair, error) { return ca.Issue("127.0.0.1") })
	st := stack.Start(t, stack.Options{Config: config.Config{DefaultRoute: "team-a", Cert: []string{crt}, Key: []string{key}}})
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "127.0.0.1", RootCAs: ca.Pool()}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, "https://"+st.Addr+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ by IP: %s, want 200 from Nexus", resp.Status)
	}
}
