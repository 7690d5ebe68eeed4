package l7

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/nexmux/nexmux/route"
)

// mirrorReq is what a request on a mirror name said about its registry,
// kept so URLs handed back keep the client's form.
type mirrorReq struct {
	registry string // canonical, one of the mirror's registries ("" when refused)
	prefix   string // path prefix segment as sent ("ghcr.io"), "" without one
	ns       string // raw ?ns= value as sent, "" without one
	// repoPath is the part of the request's path before /v2/ when there
	// is one: "[ctx]/repository/<repo>" (Nexus's own URL form) or
	// "/<registry>" (containerd's host path): a bare /v2/ URL would name
	// no registry and read the default one's repository.
	repoPath string
}

// mirrorAuth holds the Authorization value sent to Nexus for mirror
// requests that carry none (--mirror-auth-file); swapped on reload.
type mirrorAuth struct{ v atomic.Pointer[string] }

// SetMirrorAuth sets (or with "" clears) the Authorization value sent to
// Nexus for mirror requests without credentials.
func (p *Proxy) SetMirrorAuth(v string) { p.mirrorAuth.v.Store(&v) }

func (p *Proxy) mirrorAuthValue() string {
	if v := p.mirrorAuth.v.Load(); v != nil {
		return *v
	}
	return ""
}

// mirrorMethod: a mirror is read-only. GET and HEAD everywhere, POST only
// for the token endpoint (containerd's OAuth2 form POST).
func mirrorMethod(method, sub string) bool {
	return method == http.MethodGet || method == http.MethodHead ||
		method == http.MethodPost && sub == "/v2/token"
}

// mirrorAllow is the Allow header of a 405 on a mirror name: the methods
// mirrorMethod serves for sub.
func mirrorAllow(sub string) string {
	if sub == "/v2/token" {
		return "GET, HEAD, POST"
	}
	return "GET, HEAD"
}

// mirrorRepoForm splits rawPath in Nexus's own form,
// [ctx]/repository/<repo><sub>, where repo is one of m's repositories.
func (p *Proxy) mirrorRepoForm(m *route.Mirror, rawPath string) (repo, sub string, ok bool) {
	rest, ok := strings.CutPrefix(rawPath, p.up.ctxPath)
	if ok {
		rest, ok = strings.CutPrefix(rest, "/repository/")
	}
	repo, sub, _ = strings.Cut(rest, "/")
	return repo, "/" + sub, ok && m.Owns(repo)
}

// mirrorAllowFor is the Allow header of a 405 for rawPath on mirror m.
func (p *Proxy) mirrorAllowFor(m *route.Mirror, rawPath string) string {
	if _, sub, ok := p.mirrorRepoForm(m, rawPath); ok {
		return mirrorAllow(decodedPath(sub))
	}
	if _, sub, ok := registryHostPath(rawPath); ok {
		return mirrorAllow(decodedPath(sub))
	}
	return mirrorAllow(decodedPath(rawPath))
}

// mirrorRequest picks the registry, repository and upstream path of a
// request on a mirror name, or answers it itself (false). The form is read
// on the raw path, whose segments checkPath keeps those of the decoded one
// (no encoded slash), and an encoded prefix or repository name is refused;
// every other decision is made on the path as Jetty decodes it
// (decodedPath), as mapRequest's are: "v%32" is Nexus's "v2".
func (p *Proxy) mirrorRequest(w http.ResponseWriter, r *http.Request, st *reqState, m *route.Mirror, rawPath, rawQuery string) bool {
	st.mirror = &mirrorReq{}
	fail := func(status int, code, msg string) bool {
		p.refuseLocal(w, st, status, code, "nexmux: "+msg)
		st.reason = msg
		return false
	}
	readOnly := func(sub string) bool {
		w.Header().Set("Allow", mirrorAllow(sub))
		return fail(http.StatusMethodNotAllowed, "UNSUPPORTED", "a mirror is read-only")
	}
	if !registryPath(rawPath) {
		// [ctx]/repository/<repo>/v2/... of one of the mirror's own
		// repositories: Nexus hands such URLs out.
		name, sub, found := p.mirrorRepoForm(m, rawPath)
		if !found {
			if seg, sub, ok := registryHostPath(rawPath); ok {
				return p.mirrorHostPath(w, r, st, m, seg, sub, rawQuery)
			}
		}
		judged := decodedPath(sub)
		if !found || !strings.HasPrefix(judged, "/v2/") {
			return fail(http.StatusNotFound, "NOT_FOUND", "only the registry API (/v2/) is served on this name")
		}
		if !mirrorMethod(r.Method, judged) {
			return readOnly(judged)
		}
		// The same endpoints as by /v2/: no _catalog, no upload sessions.
		if judged != "/v2/" && judged != "/v2/token" && !mirrorEndpoint(judged) {
			return fail(http.StatusNotFound, "NOT_FOUND", "not a registry endpoint a mirror serves")
		}
		ns, nsReg, query, bad := mirrorNS(m, rawQuery)
		if bad != nil {
			return fail(bad.status, bad.code, bad.msg)
		}
		// containerd still sends ?ns= (a hosts.toml host ".../repository/R"):
		// the repository must mirror that registry, or a ghcr.io pull would
		// get Docker Hub's image of the same name.
		for _, e := range m.Registries {
			if e.Repo == name && (nsReg == "" || e.Registry == nsReg) {
				st.mirror.registry = e.Registry
				break
			}
		}
		if st.mirror.registry == "" {
			return fail(http.StatusBadRequest, "NAME_INVALID", "ns ("+nsReg+") is not the registry repository "+name+" mirrors")
		}
		st.repo, st.sub, st.query = name, sub, query
		st.mirror.repoPath = rawPath[:len(rawPath)-len(sub)]
		st.mirror.ns = ns
		return true
	}
	judged := decodedPath(rawPath)
	if !mirrorMethod(r.Method, judged) {
		return readOnly(judged)
	}
	if !strings.HasPrefix(judged+"/", "/v2/") {
		return fail(http.StatusNotFound, "NOT_FOUND", "only the registry API (/v2/) is served on a mirror name")
	}
	ns, nsReg, query, bad := mirrorNS(m, rawQuery)
	if bad != nil {
		return fail(bad.status, bad.code, bad.msg)
	}
	st.mirror.ns = ns
	st.query = query
	// /v2/ and the token: the default registry's repository (Nexus tokens
	// are valid in every repository, so one realm serves all of them).
	if judged == "/v2" || judged == "/v2/" || judged == "/v2/token" {
		def := m.Default()
		st.mirror.registry, st.repo, st.sub = def.Registry, def.Repo, rawPath
		st.anyRepo = true
		return true
	}
	rest := rawPath[len("/v2/"):]
	seg, after, _ := strings.Cut(rest, "/")
	if !validFirstSegment(seg) {
		return fail(http.StatusBadRequest, "NAME_INVALID", "the first path segment is neither a repository name component nor a registry host")
	}
	reg := nsReg
	sub := rawPath
	if isRegistryHost(seg) {
		afterJudged := decodedPath(after)
		prefixReg, ok := route.CanonicalRegistry(seg)
		_, mirrored := m.Repo(prefixReg)
		switch {
		case nsReg != "" && (nsReg != route.DockerHub || seg == "localhost") && prefixReg != nsReg && !mirrored && nameComponent(seg):
			// containerd sends the name as it is with ns, and outside
			// Docker Hub a first component may hold a dot
			// (gcr.io/google.com/cloudsdktool/...): part of the name.
			// Docker Hub namespaces never do, so there it is a prefix;
			// but "localhost" is a valid Hub namespace, and a registry
			// only as a reference's first component
			// (docker.io/localhost/app is Docker Hub's).
		case !ok:
			return fail(http.StatusNotFound, "NAME_UNKNOWN", "the path prefix is not a registry name")
		case nsReg != "" && nsReg != prefixReg:
			return fail(http.StatusBadRequest, "NAME_INVALID", "ns ("+nsReg+") and the path prefix ("+prefixReg+") name different registries")
		case nsReg != "" && (afterJudged == "v2" || strings.HasPrefix(afterJudged, "v2/")):
			// containerd appends /v2 to a hosts.toml host path without
			// override_path = true: read as a name, v2/<image> is whatever
			// the registry's account "v2" publishes under every image name.
			return fail(http.StatusBadRequest, "NAME_INVALID", "/v2 after the registry prefix: a hosts.toml host with a path needs override_path = true")
		default:
			reg = prefixReg
			st.mirror.prefix = seg
			sub = "/v2/" + after
		}
	}
	if reg == "" {
		if _, ok := m.Repo(route.DockerHub); !ok {
			return fail(http.StatusNotFound, "NAME_UNKNOWN", "no registry named (?ns= or a path prefix) and docker.io is not mirrored on this name")
		}
		reg = route.DockerHub
	}
	repo, ok := m.Repo(reg)
	if !ok {
		return fail(http.StatusNotFound, "NAME_UNKNOWN", "registry "+reg+" is not mirrored on this name")
	}
	if judged := decodedPath(sub); judged != "/v2/" && judged != "/v2/token" && !mirrorEndpoint(judged) {
		return fail(http.StatusNotFound, "NOT_FOUND", "only manifests, blobs, tags/list and referrers are served on a mirror name")
	}
	if reg == route.DockerHub {
		sub = officialName(sub)
	}
	st.mirror.registry, st.repo, st.sub = reg, repo, sub
	return true
}

// registryHostPath splits "/<registry>/v2[/...]" into the registry
// segment as sent and the path from /v2 on: what containerd sends to a
// hosts.toml host "https://HOST/<registry>" without override_path = true,
// as it appends /v2 to a host's path (core/remotes/docker/config/hosts.go,
// parseHostConfig). A first segment with a dot or a colon, or localhost,
// is neither a /v2/<name> route nor [ctx]/repository/<repo>.
func registryHostPath(rawPath string) (seg, sub string, ok bool) {
	seg, rest, _ := strings.Cut(strings.TrimPrefix(rawPath, "/"), "/")
	if !validFirstSegment(seg) || !isRegistryHost(seg) || rest != "v2" && !strings.HasPrefix(rest, "v2/") {
		return "", "", false
	}
	return seg, "/" + rest, true
}

// mirrorHostPath is mirrorRequest for /<registry>/v2/...: the registry
// must be one of m's, and agree with ns, as a /v2/<registry>/ prefix must.
func (p *Proxy) mirrorHostPath(w http.ResponseWriter, r *http.Request, st *reqState, m *route.Mirror, seg, sub, rawQuery string) bool {
	fail := func(status int, code, msg string) bool {
		p.refuseLocal(w, st, status, code, "nexmux: "+msg)
		st.reason = msg
		return false
	}
	judged := decodedPath(sub)
	if !mirrorMethod(r.Method, judged) {
		w.Header().Set("Allow", mirrorAllow(judged))
		return fail(http.StatusMethodNotAllowed, "UNSUPPORTED", "a mirror is read-only")
	}
	ns, nsReg, query, bad := mirrorNS(m, rawQuery)
	if bad != nil {
		return fail(bad.status, bad.code, bad.msg)
	}
	reg, ok := route.CanonicalRegistry(seg)
	repo, mirrored := m.Repo(reg)
	switch {
	case !ok || !mirrored:
		return fail(http.StatusNotFound, "NAME_UNKNOWN", "the registry before /v2/ ("+seg+") is not mirrored on this name")
	case nsReg != "" && nsReg != reg:
		return fail(http.StatusBadRequest, "NAME_INVALID", "ns ("+nsReg+") and the registry before /v2/ ("+reg+") name different registries")
	case judged != "/v2" && judged != "/v2/" && judged != "/v2/token" && !mirrorEndpoint(judged):
		return fail(http.StatusNotFound, "NOT_FOUND", "only manifests, blobs, tags/list and referrers are served on a mirror name")
	}
	if reg == route.DockerHub {
		sub = officialName(sub)
	}
	st.mirror.registry, st.mirror.ns, st.mirror.repoPath = reg, ns, "/"+seg
	st.repo, st.sub, st.query = repo, sub, query
	return true
}

// nsRefusal is how a mirror name answers a bad ?ns=.
type nsRefusal struct {
	status    int
	code, msg string
}

// mirrorNS takes ?ns= out of rawQuery: its raw value, the canonical
// registry it names (one of m's; both "" without ns) and the rest of the
// query, or the refusal.
func mirrorNS(m *route.Mirror, rawQuery string) (ns, reg, query string, bad *nsRefusal) {
	ns, query, ok := cutNS(rawQuery)
	if !ok {
		return "", "", "", &nsRefusal{http.StatusBadRequest, "NAME_INVALID", "ns is malformed or given twice with different values"}
	}
	if ns == "" {
		return "", "", query, nil
	}
	dec, err := url.QueryUnescape(ns)
	if err != nil {
		return "", "", "", &nsRefusal{http.StatusBadRequest, "NAME_INVALID", "ns is malformed"}
	}
	if reg, ok = route.CanonicalRegistry(dec); !ok {
		return "", "", "", &nsRefusal{http.StatusNotFound, "NAME_UNKNOWN", "ns does not name a registry"}
	}
	if _, ok := m.Repo(reg); !ok {
		return "", "", "", &nsRefusal{http.StatusNotFound, "NAME_UNKNOWN", "registry " + reg + " is not mirrored on this name"}
	}
	return ns, reg, query, nil
}

// cutNS removes every ns parameter from a raw query and returns its raw
// value; the other parameters stay byte for byte. An ns parameter is one
// whose name url.ParseQuery (and Nexus) reads as "ns": "%6es=" too, and a
// bare "ns", an empty value as "ns=" is. ok is false when two ns
// parameters differ or one is empty.
func cutNS(rawQuery string) (ns, rest string, ok bool) {
	if !strings.Contains(rawQuery, "ns") && !strings.Contains(rawQuery, "%") {
		return "", rawQuery, true
	}
	var kept []string
	found := false
	for param := range strings.SplitSeq(rawQuery, "&") {
		key, v, _ := strings.Cut(param, "=")
		if !isNSKey(key) {
			kept = append(kept, param)
			continue
		}
		if found && v != ns || v == "" {
			return "", "", false
		}
		ns, found = v, true
	}
	if !found {
		return "", rawQuery, true
	}
	return ns, strings.Join(kept, "&"), true
}

// isNSKey reports whether a raw query parameter name decodes to "ns".
func isNSKey(raw string) bool {
	if raw == "ns" {
		return true
	}
	if len(raw) > len("%6e%73") || !strings.Contains(raw, "%") {
		return false
	}
	key, err := url.QueryUnescape(raw)
	return err == nil && key == "ns"
}

// validFirstSegment: a repository name component ([a-z0-9._-]) or a
// registry host ([A-Za-z0-9.-] with an optional :port). Anything else
// (percent-encoding, ';', '@') is a trick, never a name.
func validFirstSegment(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}

// nameComponent reports a path component of Docker's reference grammar:
// [a-z0-9]+ runs joined by one '.', one or two '_', or '-'s. Never a
// port, upper case, or a run of dots.
func nameComponent(s string) bool {
	alnum := func(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
	for i := 0; i < len(s); {
		if !alnum(s[i]) {
			return false
		}
		for i < len(s) && alnum(s[i]) {
			i++
		}
		if i == len(s) {
			return true
		}
		j := i
		for j < len(s) && !alnum(s[j]) {
			j++
		}
		if sep := s[i:j]; sep != "." && sep != "_" && sep != "__" && strings.Trim(sep, "-") != "" {
			return false
		}
		i = j
	}
	return false
}

// isRegistryHost is Docker's reference grammar: a first component with a
// dot or a colon, or "localhost", is a registry host.
func isRegistryHost(seg string) bool {
	return strings.ContainsAny(seg, ".:") || strings.EqualFold(seg, "localhost")
}

// mirrorEndpoint reports a read endpoint below an image name: manifests,
// blobs (not upload sessions), tags/list and referrers.
func mirrorEndpoint(sub string) bool {
	_, ok := mirrorImageName(sub)
	return ok
}

// mirrorImageName is the image name of a mirrorEndpoint path.
func mirrorImageName(sub string) (string, bool) {
	name := strings.TrimPrefix(sub, "/v2/")
	if n, ok := strings.CutSuffix(name, "/tags/list"); ok {
		return n, n != ""
	}
	i := strings.LastIndexByte(name, '/')
	if i <= 0 || i == len(name)-1 {
		return "", false
	}
	dir := name[:i]
	for _, ep := range []string{"/manifests", "/blobs", "/referrers"} {
		if n, ok := strings.CutSuffix(dir, ep); ok && n != "" {
			return n, !(ep == "/blobs" && name[i+1:] == "uploads")
		}
	}
	return "", false
}

// officialName puts library/ before a one-component Docker Hub image name
// in the raw path sub, as Docker's reference grammar reads docker.io/alpine:
// Docker Hub keeps official images there and has no one-component
// repository, and a client that names the mirror as the image's registry
// (docker pull mirror/docker.io/alpine) does not add it. Raw and decoded
// segments are the same (checkPath).
func officialName(sub string) string {
	if name, ok := mirrorImageName(decodedPath(sub)); !ok || strings.Contains(name, "/") {
		return sub
	}
	return "/v2/library/" + strings.TrimPrefix(sub, "/v2/")
}

// publicForm puts the client's registry form (path prefix, ns, or
// [ctx]/repository/<repo>) back into the public URLs of Location and Link.
func (mr *mirrorReq) publicForm(h http.Header, base string) {
	if mr.prefix == "" && mr.ns == "" && mr.repoPath == "" {
		return
	}
	if v := h.Values("Location"); len(v) > 0 {
		for i := range v {
			v[i] = mr.form(v[i], base)
		}
	}
	if v := h.Values("Link"); len(v) > 0 {
		for i := range v {
			v[i] = mapLinkURLs(v[i], func(u string) string { return mr.form(u, base) })
		}
	}
}

func (mr *mirrorReq) form(u, base string) string {
	rest, ok := strings.CutPrefix(u, base+"/v2/")
	if !ok {
		return u
	}
	if mr.prefix != "" {
		rest = mr.prefix + "/" + rest
	}
	if mr.ns != "" {
		// Into the query: after a fragment the client would not send it.
		q, frag, hasFrag := strings.Cut(rest, "#")
		if strings.Contains(q, "?") {
			rest = q + "&ns=" + mr.ns
		} else {
			rest = q + "?ns=" + mr.ns
		}
		if hasFrag {
			rest += "#" + frag
		}
	}
	if mr.repoPath != "" {
		return base + mr.repoPath + "/v2/" + rest
	}
	return base + "/v2/" + rest
}

// mapLinkURLs applies f to every <URL> of a Link header value.
func mapLinkURLs(v string, f func(string) string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			break
		}
		b.WriteString(v[:i+1])
		b.WriteString(f(v[i+1 : i+j]))
		b.WriteByte('>')
		v = v[i+j+1:]
	}
	b.WriteString(v)
	return b.String()
}

// registryLabel is the registry for logs and metrics: a configured
// registry or "".
func (st *reqState) registryLabel() string {
	if st.mirror == nil {
		return ""
	}
	return st.mirror.registry
}

// mirrorOutgoing adds --mirror-auth-file credentials to a mirror read
// that carries none. Never to a token request: Nexus would hand the
// anonymous client a token of the mirror's user, and a Nexus token is good
// in every repository, pushes to other teams' included. Reads with the
// credentials added get no 401, so a client has no token to fetch.
func (p *Proxy) mirrorOutgoing(st *reqState, out *http.Request) {
	// Judged as decoded too: "toke%256e" may be the token endpoint to a
	// server that decodes more than once.
	if st.mirror == nil || out.Header.Get("Authorization") != "" || route.IsTokenPath(out.URL.Path) || route.IsTokenPath(st.judged) {
		return
	}
	if v := p.mirrorAuthValue(); v != "" {
		out.Header.Set("Authorization", v)
	}
}
