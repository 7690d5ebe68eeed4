package route

import (
	"encoding/binary"
	"encoding/hex"
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
	// Pushed is the list a push token's mark carries (PushList): the
	// session pushes to those image names only, and reads any other name
	// a pull does. "" with AuthBearerPush: a mark without a list, which
	// pushes to every name.
	Pushed string
}

// Pick chooses the repository for one request on this target. Writes,
// upload sessions and push-scoped token GETs go to Push; reads and every
// other token request (containerd's POST included) go to Pull, except a
// push session's manifest GETs of an image it pushes to, which read back
// what the session is about to rewrite. Existence checks (HEAD of a
// manifest or a blob) follow the session:
//   - push session (marked token), for an image the token was granted push
//     on: Push. containerd and BuildKit HEAD every
//     manifest before its PUT and go-containerregistry HEADs an index's
//     children; the group would answer "exists" for what only a proxy member
//     holds, the PUT would be skipped and the hosted image left incomplete;
//   - pull session (unmarked token), or an image a push token grants pull
//     only: Pull. containerd's FetchByDigest HEADs
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
		// A push session reads the referrers list that
		// go-containerregistry and oras keep under the tag
		// "sha256-<hex>" (no referrers API) in order to write it back
		// with its artifact added: it must read what hosted holds, not a
		// proxy member's list naming manifests hosted lacks. Its other
		// manifest reads (a base image, a source) still read the group.
		if r.Auth == AuthBearerPush && dirIs(r.Path, "/manifests") && referrersTag(r.Path) && r.pushes() {
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
			// One token may also grant pull on other images, read in
			// the same session: oras cp asks one token for its source
			// and its destination.
			if r.pushes() {
				return t.Push
			}
			return t.Pull
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

// maxPushed bounds the image names a mark lists; a token granted push on
// more gets a mark without a list (every name).
const maxPushed = 16

// pushKeyLen is one name's entry in a mark's list: '-' and 16 hex digits.
const pushKeyLen = 17

// PushList returns the list nexmux appends to its push mark on the token
// a token request's query gets: for every image name granted push, '-'
// and the 64-bit FNV-1a hash of the name in hex, so the mark stays short
// and made of token68 characters. "" when the query grants push on more
// than maxPushed names.
func PushList(query string) string {
	var b []byte
	for name := range pushScopes(query) {
		k := pushKey(name)
		if strings.Contains(string(b), string(k[:])) {
			continue
		}
		if len(b) == maxPushed*pushKeyLen {
			return ""
		}
		b = append(b, k[:]...)
	}
	return string(b)
}

// ValidPushList reports whether s is a list PushList could have made.
func ValidPushList(s string) bool {
	if len(s)%pushKeyLen != 0 || len(s) > maxPushed*pushKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i%pushKeyLen == 0 {
			if c != '-' {
				return false
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// pushKey is one name's entry in a push list.
func pushKey(name string) [pushKeyLen]byte {
	h := uint64(14695981039346656037) // FNV-1a 64, as hash/fnv's New64a (which allocates)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h)
	var k [pushKeyLen]byte
	k[0] = '-'
	hex.Encode(k[1:], sum[:])
	return k
}

// pushes reports whether a push session's request is for an image its
// token was granted push on. A request that names no image (HEAD /v2/)
// counts as the push's.
func (r Request) pushes() bool {
	if r.Pushed == "" {
		return true
	}
	name, ok := imageName(r.Path)
	if !ok {
		return true
	}
	k := pushKey(name)
	for i := 0; i+pushKeyLen <= len(r.Pushed); i += pushKeyLen {
		if r.Pushed[i:i+pushKeyLen] == string(k[:]) {
			return true
		}
	}
	return false
}

// imageName returns the image name of a manifest or blob path
// ("/v2/<name>/manifests/<ref>", "/v2/<name>/blobs/<digest>").
func imageName(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	i := strings.LastIndexByte(rest, '/')
	if !ok || i < 0 {
		return "", false
	}
	dir := rest[:i]
	for _, ep := range [...]string{"/manifests", "/blobs"} {
		if name, ok := strings.CutSuffix(dir, ep); ok && name != "" {
			return name, true
		}
	}
	return "", false
}

// referrersTag reports whether path's last segment is a tag of the OCI
// referrers tag schema for a sha256 or sha512 digest: "sha256-" and 64
// lowercase hex digits, or "sha512-" and 128.
func referrersTag(path string) bool {
	tag := path[strings.LastIndexByte(path, '/')+1:]
	var hex string
	switch {
	case strings.HasPrefix(tag, "sha256-"):
		hex = tag[len("sha256-"):]
		if len(hex) != 64 {
			return false
		}
	case strings.HasPrefix(tag, "sha512-"):
		hex = tag[len("sha512-"):]
		if len(hex) != 128 {
			return false
		}
	default:
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
