package config

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/nexmux/nexmux/internal/smallfile"
	"github.com/nexmux/nexmux/route"
)

// loadMirrorAuth reads --mirror-auth-file: exactly one user:password line
// (blank lines and # comments aside). It returns the Basic Authorization
// value nexmux sends to Nexus.
func loadMirrorAuth(file string) (string, error) {
	data, err := smallfile.Read(file)
	if err != nil {
		return "", fmt.Errorf("mirror-auth-file: %v", err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(data), "\n") {
		// Nexus compares the password byte for byte, so blanks after
		// the user are kept; an indent is not part of a Nexus user id,
		// and a file indented before must not start failing.
		l = strings.TrimLeft(strings.TrimSuffix(l, "\r"), " \t")
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		return "", fmt.Errorf("mirror-auth-file %s: want exactly one user:password line, found %d", file, len(lines))
	}
	user, _, ok := strings.Cut(lines[0], ":")
	switch {
	case !ok:
		return "", fmt.Errorf("mirror-auth-file %s: the line is not user:password", file)
	case strings.TrimSpace(user) == "":
		return "", fmt.Errorf("mirror-auth-file %s: the user before ':' is empty", file)
	}
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(lines[0])), nil
}

// describeMirror renders a mirror name's table for `nexmux check`: one line
// per registry, and which repository answers /v2/ and the token.
func describeMirror(b *Runtime, r *route.Route) string {
	var sb strings.Builder
	prefix := b.Upstreams.ContextPath() + "/repository/"
	def := r.Mirror.Default()
	fmt.Fprintf(&sb, "  %-32s mirror (/v2/ and token: %s%s/)\n", r.Key, prefix, def.Repo)
	for _, e := range r.Mirror.Registries {
		fmt.Fprintf(&sb, "    %-30s %s%s/\n", e.Registry, prefix, e.Repo)
	}
	if b.MirrorAuth != "" {
		sb.WriteString("    (requests without credentials use --mirror-auth-file)\n")
	}
	return sb.String()
}

// sharedMirrorRepos warns of a repository that serves more than one
// registry (--mirror, on any name): Nexus ignores ns, so a name both
// registries have is read from whichever the repository (a group: its
// first member) finds first, and a ghcr.io pull can get Docker Hub's image.
func sharedMirrorRepos(routes []*route.Route) []string {
	regs := map[string][]string{}
	var order []string
	for _, r := range routes {
		if r.Mirror == nil {
			continue
		}
		for _, e := range r.Mirror.Registries {
			if _, seen := regs[e.Repo]; !seen {
				order = append(order, e.Repo)
			}
			if !slices.Contains(regs[e.Repo], e.Registry) {
				regs[e.Repo] = append(regs[e.Repo], e.Registry)
			}
		}
	}
	var out []string
	for _, repo := range order {
		if rs := regs[repo]; len(rs) > 1 {
			out = append(out, fmt.Sprintf("mirror: repository %s serves %s: Nexus ignores ns, so an image name more than one of them has is read from whichever %s finds first (a group: its first member), and a pull through one registry can get another registry's image; give each registry its own proxy repository (or a group of proxies of that registry only)",
				repo, strings.Join(rs, ", "), repo))
		}
	}
	return out
}
