package daemon_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// A reload that replaces every node at once (a single Nexus grown into a
// cluster, or the nodes renamed from IPs to DNS names) leaves no joined node
// to wait for the new ones' probes: reads and writes go to the new nodes at
// once, as to the first configuration's, instead of a 503 "no Nexus node is
// reachable" to every client until their second probe.
func TestHAReloadReplacingEveryNodeKeepsServing(t *testing.T) {
	file, writeFile := configFile(t)
	writeFile("drain-timeout: 30s\n")
	cfg := haConfig()
	// No probe round comes by itself while the test runs: only the one a
	// reload starts.
	cfg.HealthInterval = time.Hour
	st := stack.Start(t, stack.Options{Nodes: 3, Config: cfg, ConfigFile: file})
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	tr := h1(st)
	read := func(step string) {
		t.Helper()
		if r, b := do(t, tr, http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil); r.StatusCode != http.StatusOK {
			t.Fatalf("%s: read %s %s", step, r.Status, b)
		}
	}
	n := st.NexusNodes
	writeFile("upstream: [" + n[0].URL() + "]\n")
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	read("one node")
	writeFile("upstream: [" + strings.Join([]string{n[1].URL(), n[2].URL()}, ", ") + "]\n")
	if err := st.Daemon.Reload(); err != nil {
		t.Fatal(err)
	}
	read("every node replaced")
	if r, b := do(t, tr, http.MethodPost, "https://"+st.Host("team-a")+"/v2/swap/app/blobs/uploads/", nil); r.StatusCode != http.StatusAccepted {
		t.Fatalf("every node replaced: upload %s %s", r.Status, b)
	}
}

// A reload that drains every node leaves nothing to take new reads or
// uploads: it is refused, the previous configuration keeps serving,
// rather than a 503 "no Nexus node is reachable" to every client (and
// /readyz failing on every replica the ConfigMap reaches).
func TestHAReloadDrainingEveryNodeRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nexmux.yaml")
	if err := os.WriteFile(file, []byte("drain-timeout: 30s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := stack.Start(t, stack.Options{Nodes: 2, Config: haConfig(), ConfigFile: file})
	img, _ := random.Image(1024, 1)
	if err := st.Nexus.Seed("team-a-proxy", "base", "1", img); err != nil {
		t.Fatal(err)
	}
	n := st.NexusNodes
	if err := os.WriteFile(file, []byte("drain-upstream: ["+n[0].URL()+", "+n[1].URL()+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.Daemon.Reload(); err == nil || !strings.Contains(err.Error(), "drain-upstream") {
		t.Errorf("a reload draining every node: %v, want refused naming drain-upstream", err)
	}
	tr := h1(st)
	if r, b := do(t, tr, http.MethodGet, "https://"+st.Host("team-a")+"/v2/base/manifests/1", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("read after a reload draining every node: %s %s", r.Status, b)
	}
}
