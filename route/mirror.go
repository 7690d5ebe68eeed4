package route

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Mirror is the target of a mirror name: one host name serving several
// remote registries, each through its own Nexus (proxy) repository. The
// registry a request is for comes from containerd's ?ns= or a path prefix
// (package l7 decides); the table only knows which registries exist.
type Mirror struct {
	// Registries in the order they were configured.
	Registries []MirrorEntry
}

// MirrorEntry is one REGISTRY=REPO of a mirror name.
type MirrorEntry struct {
	Registry string // canonical (CanonicalRegistry)
	Repo     string
}

// Repo returns the repository serving a canonical registry name.
func (m *Mirror) Repo(registry string) (string, bool) {
	for _, e := range m.Registries {
		if e.Registry == registry {
			return e.Repo, true
		}
	}
	return "", false
}

// Default is the entry that answers /v2/ and the token endpoint: docker.io
// when configured (docker's registry-mirrors sends no registry at all),
// else the first one.
func (m *Mirror) Default() MirrorEntry {
	for _, e := range m.Registries {
		if e.Registry == DockerHub {
			return e
		}
	}
	return m.Registries[0]
}

// Owns reports whether repo serves one of the mirror's registries: the only
// repositories a client on this name may reach.
func (m *Mirror) Owns(repo string) bool {
	for _, e := range m.Registries {
		if e.Repo == repo {
			return true
		}
	}
	return false
}

func (m *Mirror) String() string {
	parts := make([]string, len(m.Registries))
	for i, e := range m.Registries {
		parts[i] = e.Registry + "=" + e.Repo
	}
	return "mirror " + strings.Join(parts, ", ")
}

// DockerHub is Docker Hub's canonical registry name.
const DockerHub = "docker.io"

// CanonicalRegistry lowercases a registry name as clients write it, drops
// an explicit ":443" (registries are reached over HTTPS, so "ghcr.io:443"
// is ghcr.io: containerd sends ?ns=ghcr.io:443 for such an image) and maps
// Docker Hub's other names onto "docker.io". ok is false when s is not a
// registry host ("name", "name:port", "[IPv6]" or "[IPv6]:port").
func CanonicalRegistry(s string) (string, bool) {
	s = strings.ToLower(s)
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		// An IPv6 literal, bracketed as the reference grammar and
		// containerd's ns= write it: one spelling per address.
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return "", false
		}
		host, port = "["+a.String()+"]", s[end+1:]
		if port != "" {
			p, ok := strings.CutPrefix(port, ":")
			if !ok {
				return "", false
			}
			port = p
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		// Unbracketed, "fd00::5:5000" could be either address and port.
		if strings.IndexByte(host, ':') >= 0 {
			return "", false
		}
	}
	if port != "" || strings.HasSuffix(s, ":") {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", false
		}
	}
	if !strings.HasPrefix(host, "[") && (host == "" || len(host) > 253 || net.ParseIP(host) == nil && !IsHostName(host)) {
		return "", false
	}
	s = host
	if port != "" && port != "443" {
		s = host + ":" + port
	}
	switch s {
	case "registry-1.docker.io", "index.docker.io":
		return DockerHub, true
	}
	return s, true
}

// parseMirrors adds the --mirror HOST/REGISTRY=REPO values to t, one route
// per HOST. Every problem is returned.
func (t *Table) parseMirrors(specs []string) []error {
	var errs []error
	byHost := map[string]*Route{}
	var order []string
	for _, s := range specs {
		left, repo, ok := strings.Cut(s, "=")
		host, reg, ok2 := strings.Cut(left, "/")
		if !ok || !ok2 {
			errs = append(errs, fmt.Errorf("mirror %q: want HOST/REGISTRY=REPO (mirror.example.com/docker.io=dockerhub-proxy)", s))
			continue
		}
		var bad []string
		h, err := NormalizePattern(host)
		if err != nil {
			bad = append(bad, err.Error())
		}
		r, ok := CanonicalRegistry(strings.TrimSpace(reg))
		if !ok {
			bad = append(bad, fmt.Sprintf("%q is not a registry name (docker.io, ghcr.io, registry.corp:5000)", reg))
		}
		repo = strings.TrimSpace(repo)
		if err := ValidRepoName(repo); err != nil {
			bad = append(bad, err.Error())
		}
		if len(bad) > 0 {
			errs = append(errs, fmt.Errorf("mirror %q: %s", s, strings.Join(bad, "; ")))
			continue
		}
		rt := byHost[h]
		if rt == nil {
			rt = &Route{Kind: KindSNI, Key: h, Mirror: &Mirror{}}
			byHost[h] = rt
			order = append(order, h)
		}
		if prev, dup := rt.Mirror.Repo(r); dup {
			errs = append(errs, fmt.Errorf("mirror %q: %s/%s is already mirrored by %s", s, h, r, prev))
			continue
		}
		rt.Mirror.Registries = append(rt.Mirror.Registries, MirrorEntry{Registry: r, Repo: repo})
	}
	for _, h := range order {
		for _, err := range t.addHost(byHost[h], "mirror "+h) {
			errs = append(errs, fmt.Errorf("%w: a mirror name cannot also be a --route or --passthrough host", err))
		}
	}
	return errs
}
