package l7

import (
	"bytes"
	"io"
	"net/http"
	"slices"
)

// repoFallback sends /v2/ and token requests by the /v2/ path
// (reqState.anyRepo) on to the name's next repository when one answers as
// offline (503) or unknown (404 to a GET or HEAD). They name no
// repository, and Nexus tokens are user keys every repository issues and
// takes: one repository taken offline or renamed must not fail the pings
// (docker, crane, skopeo) and tokens (containerd's POST first) of requests
// meant for another, on a mirror name (every registry pings the docker.io
// repository) or a one-name route (pushes ping the group).
type repoFallback struct {
	next    http.RoundTripper
	ctxPath string
}

func (f repoFallback) RoundTrip(r *http.Request) (*http.Response, error) {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	if st == nil || !st.anyRepo || st.ci == nil || st.ci.Route == nil {
		return f.next.RoundTrip(r)
	}
	body := st.form
	if body == nil && r.Body != nil && r.Body != http.NoBody {
		return f.next.RoundTrip(r) // not a body that can be sent again
	}
	orig := r.Clone(r.Context()) // before the failover transport edits r
	tried := []string{st.repo}
	resp, err := f.next.RoundTrip(r)
	for err == nil && repoUnavailable(r.Method, resp.StatusCode) && r.Context().Err() == nil {
		repo, registry, ok := nextRepo(st, tried)
		if !ok {
			break
		}
		resp.Body.Close()
		tried = append(tried, repo)
		st.repo = repo
		if st.mirror != nil {
			st.mirror.registry = registry
		}
		st.path = f.ctxPath + "/repository/" + repo + st.sub
		r = orig.Clone(orig.Context())
		setWirePath(r.URL, st.path)
		if body != nil {
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		resp, err = f.next.RoundTrip(r)
	}
	return resp, err
}

// repoUnavailable: Nexus's answer for an offline repository (503), or for
// one that does not exist (404; a POST to the token endpoint may get a 404
// of its own, which containerd takes as "use GET").
func repoUnavailable(method string, status int) bool {
	return status == http.StatusServiceUnavailable ||
		status == http.StatusNotFound && (method == http.MethodGet || method == http.MethodHead)
}

// nextRepo is the first of the name's repositories not in tried: a
// mirror's in the order configured (with its registry, for logs), a
// route's pull then push repository.
func nextRepo(st *reqState, tried []string) (repo, registry string, ok bool) {
	if m := st.ci.Route.Mirror; m != nil {
		for _, e := range m.Registries {
			if !slices.Contains(tried, e.Repo) {
				return e.Repo, e.Registry, true
			}
		}
		return "", "", false
	}
	for _, repo := range []string{st.ci.Route.Target.Pull, st.ci.Route.Target.Push} {
		if repo != "" && !slices.Contains(tried, repo) {
			return repo, "", true
		}
	}
	return "", "", false
}
