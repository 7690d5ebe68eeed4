package route

import (
	"net/http"
	"strings"
)

// Auth is what a request's credentials say about the session it belongs to.
// nexmux learns it without shared state: it marks the tokens it hands out
// for a push scope (see l7/tokenmark.go) and reads the mark back from every
// request's Authorization header, so any replica decides alike.
type Auth int

const (
	// AuthNone: no credentials (anonymous reads).
	AuthNone Auth = iota
	// AuthBasic: Basic credentials on every request (force-basic
	// repositories); nothing tells a push session from a pull.
	AuthBasic
	// AuthBearer: a token obtained for pull scopes only: a pull session.
	AuthBearer
	// AuthBearerPush: a token nexmux marked because it was granted for a
	// scope with the push action: a push session.
	AuthBearerPush
)

func (a Auth) String() string {
	switch a {
	case AuthBasic:
		return "basic"
	case AuthBearer:
		return "bearer"
	case AuthBearerPush:
		return "bearer-push"
	}
	return "none"
}

// Request is what Pick needs to know about one Registry API request: method,
// path below the repository prefix ("/v2/app/blobs/uploads/"), raw query and
// the session its credentials reveal.
type Request struct {
	Method, Path, Query string
	Auth                Auth
}

// Pick chooses the repository for one request on this target. Writes,
// upload sessions and push-scoped token GETs go to Push; reads and every
// other token request (containerd's POST included) go to Pull. Existence
// checks (HEAD of a manifest or a blob) follow the session:
//   - push session (marked token): Push. containerd and BuildKit HEAD every
//     manifest before its PUT and go-containerregistry HEADs an index's
//     children; the group would answer "exists" for what only a proxy member
//     holds, the PUT would be skipped and the hosted image left incomplete;
//   - pull session (unmarked token): Pull. containerd's FetchByDigest HEADs
//     blobs while pulling and must see what the group holds;
//   - Basic or no credentials: blobs go to Push (docker, crane and skopeo
//     check layers with HEAD only when pushing; they pull with GET) and
//     manifests to Pull (containerd resolves tags with HEAD).
func (t Target) Pick(r Request) string {
	if !t.Split() {
		return t.Pull
	}
	// The token endpoint is a read whatever the method: containerd's
	// OAuth2 POST comes first on every pull, and an offline or refusing
	// hosted repository must not fail it (containerd falls back to GET
	// only on 400/401/404/405).
	if IsTokenPath(r.Path) && !TokenPush(r.Method, r.Path, r.Query) {
		return t.Pull
	}
	switch r.Method {
	case http.MethodGet, http.MethodOptions:
		// An upload session (GET .../blobs/uploads/<uuid> is its status)
		// only exists in the repository it was started in.
		if dirIs(r.Path, "/blobs/uploads") || TokenPush(r.Method, r.Path, r.Query) {
			return t.Push
		}
		return t.Pull
	case http.MethodHead:
		// An upload session's status, as for GET: only its repository
		// knows it, whatever the token.
		if dirIs(r.Path, "/blobs/uploads") {
			return t.Push
		}
		switch r.Auth {
		case AuthBearerPush:
			return t.Push
		case AuthBearer:
			return t.Pull
		}
		if dirIs(r.Path, "/blobs") {
			return t.Push
		}
		return t.Pull
	default:
		return t.Push
	}
}

// TokenPush reports whether a request asks the token endpoint for a scope
// with the push action. Only GET counts: Nexus has no OAuth2 POST flow (it
// answers 404 and clients fall back to GET with Basic credentials).
func TokenPush(method, path, query string) bool {
	return method == http.MethodGet && IsTokenPath(path) && pushScope(query)
}

// IsTokenPath reports whether path is a token endpoint ("/v2/token"; the
// repository's, or under [ctx]/repository/<repo>/).
func IsTokenPath(path string) bool {
	return strings.HasSuffix(path, "/v2/token")
}
