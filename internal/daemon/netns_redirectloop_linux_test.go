//go:build linux

package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/iptables"
	"github.com/nexmux/nexmux/internal/testnet"
)

// TestNetnsUpstreamOnARedirectedPortLoops: the rules' OUTPUT jump REDIRECTs
// every connection this host makes to a --port port on a local address,
// nexmux's own included. With Nexus on this host at that port (its legacy
// connector still open, or its main port given as a --port), nexmux's
// connection to it reaches nexmux's listener instead, is routed by the
// port to the same node, and so on: Nexus sees nothing, the client gets
// whatever refusal ends the chain. nexmux serve, run in the namespace as
// the binary (its upstream dials must be made there), warns of it at start.
func TestNetnsUpstreamOnARedirectedPortLoops(t *testing.T) {
	requireNetns(t, "go")
	bin := filepath.Join(t.TempDir(), "nexmux")
	sh(t, "", "go", "build", "-o", bin, "../../cmd/nexmux")
	ns := newNetns(t, "nxl")
	dumpOnFailure(t, ns, nil)
	const listen, legacy = 18443, 18082

	// Nexus, on this host at the legacy port.
	nx, err := fixtures.New(fixtures.Config{Repos: stack.TeamRepos("team-a"), Users: map[string]string{stack.User: stack.Password}, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nx.Close() })
	ln, err := nsListen(ns)("tcp4", "127.0.0.1:"+strconv.Itoa(legacy))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: nx}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })

	rules, err := iptables.Rules{ListenPort: listen, Ports: []int{legacy}, Jumps: true}.Apply()
	if err != nil {
		t.Fatal(err)
	}
	sh(t, rules, "ip", "netns", "exec", ns, "iptables-restore", "--noflush")

	// A low per-client limit ends the chain early: every hop comes from
	// 127.0.0.1.
	logs := &testnet.Buffer{}
	upstream := fmt.Sprintf("http://127.0.0.1:%d", legacy)
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "serve", "--listen", ":"+strconv.Itoa(listen),
		"--port", fmt.Sprintf("%d=team-a", legacy), "--upstream", upstream, "--max-requests-per-client", "4")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nexmux log:\n%s", logs.String())
		}
	})
	dial := nsDial(ns)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if c, err := dial(ctxT(t), "tcp", "127.0.0.1:"+strconv.Itoa(listen)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nexmux did not listen on %d", listen)
		}
	}

	// A docker client on this host, at the legacy port.
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr) },
	}}
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodGet, upstream+"/v2/", nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := client.Do(req)
	status := 0
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	if status == http.StatusOK {
		t.Errorf("GET /v2/ at the legacy port: 200, want the refusal that ends the loop")
	}
	for _, r := range nx.Requests() {
		if strings.HasSuffix(r.RawPath, "/v2/") {
			t.Errorf("Nexus got %s %s: nexmux's connection reached it, no loop", r.Method, r.RawPath)
		}
	}
	// The client's one request came back to nexmux hop after hop (access
	// lines are written in batches: waited for, not timed).
	hops := func() int { return strings.Count(logs.String(), "msg=request route=:"+strconv.Itoa(legacy)+" ") }
	for deadline := time.Now().Add(30 * time.Second); hops() < 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if n := hops(); n < 2 {
		t.Errorf("nexmux logged %d requests on the port route (client got %d, %v), want the loop's several", n, status, err)
	}
	want := "upstream " + upstream + " is on this host, at port " + strconv.Itoa(legacy) + " of a --port route"
	if !strings.Contains(logs.String(), want) {
		t.Errorf("serve did not warn %q", want)
	}
}
