package config

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// shippedConfigs are the nexmux configuration files the README and the
// Kubernetes manifest print: a YAML block of the README that is a config
// file itself, and the data of every ConfigMap, in the README or in
// deploy/kubernetes, that holds one.
func shippedConfigs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]byte{}
	for i, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1) {
		docs["README.md block "+string(rune('1'+i))] = m[1]
	}
	manifests, _ := filepath.Glob("../../deploy/kubernetes/*.yaml")
	for _, f := range manifests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[filepath.Base(f)] = b
	}
	for name, b := range docs {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for n := 0; ; n++ {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: document %d: %v", name, n, err)
			}
			if doc["kind"] == nil {
				if _, ok := doc["listen"]; ok {
					out[name] = string(b)
				}
				continue
			}
			if doc["kind"] != "ConfigMap" {
				continue
			}
			data, _ := doc["data"].(map[string]any)
			for k, v := range data {
				if s, ok := v.(string); ok && strings.HasSuffix(k, ".yaml") {
					out[name+" "+k] = s
				}
			}
		}
	}
	return out
}

// Every configuration the README or the manifests print is read by nexmux
// as printed: no unknown key, no value its flag would refuse.
func TestShippedConfigsParse(t *testing.T) {
	configs := shippedConfigs(t)
	if len(configs) < 3 {
		t.Fatalf("found %d shipped configurations, want the README's example, its HA ConfigMap and the manifest's", len(configs))
	}
	for name, text := range configs {
		f := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		var c Config
		if err := c.ApplyFile(f); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestShippedPodIPListenAddresses: a listen address the README or the
// manifests build from the pod IP ($(POD_IP), the downward API's
// status.podIP) must be valid on IPv4 and on IPv6 clusters alike; a bare
// IPv6 pod IP followed by ":9090" is no HOST:PORT, and nexmux would not
// start.
func TestShippedPodIPListenAddresses(t *testing.T) {
	docs := []string{"../../README.md"}
	manifests, _ := filepath.Glob("../../deploy/kubernetes/*.yaml")
	docs = append(docs, manifests...)
	env := regexp.MustCompile(`(NEXMUX_\w*LISTEN)\b[^"]*?value:\s*"([^"]*\$\(POD_IP\)[^"]*)"`)
	found := 0
	for _, f := range docs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range env.FindAllStringSubmatch(string(b), -1) {
			found++
			var s *Setting
			for _, cand := range Settings() {
				if cand.Env() == m[1] {
					s = &cand
				}
			}
			if s == nil {
				t.Fatalf("%s: %s is no setting's variable", f, m[1])
			}
			for _, podIP := range []string{"10.244.1.7", "fd00:10:244:1::7"} {
				c := Defaults()
				c.Port = []string{"8082=team-a"}
				s.Set(c, strings.ReplaceAll(m[2], "$(POD_IP)", podIP))
				if _, err := c.Build(); err != nil && strings.Contains(err.Error(), s.Name) {
					t.Errorf("%s: %s=%q with pod IP %s: %v", filepath.Base(f), m[1], m[2], podIP, err)
				}
			}
		}
	}
	if found < 2 {
		t.Fatalf("found %d listen addresses built from the pod IP, want the README's and the manifest's", found)
	}
}
