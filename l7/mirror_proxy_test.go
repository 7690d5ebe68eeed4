package l7

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexmux/nexmux/internal/testnet"
	"github.com/nexmux/nexmux/route"
	"github.com/nexmux/nexmux/upstream"
)

// seenRequest is what the Nexus stand-in received.
type seenRequest struct {
	path, query, auth string
	header            http.Header
}

// mirrorProxy serves one Proxy, with --mirror-auth-file credentials set, in
// front of a Nexus stand-in at context path /nexus that records what
// reaches it. mirror.example.com mirrors ghcr.io and quay.io (no
// docker.io); team-a.example.com is an ordinary route. It returns the
// address of each name's listener, the requests Nexus saw, and the
// registry label of each finished request (access line, metrics).
func mirrorProxy(t *testing.T) (mirror, team string, seen func() []seenRequest, registries <-chan string) {
	t.Helper()
	return mirrorProxyFor(t, "mirror.example.com/ghcr.io=ghcr-proxy", "mirror.example.com/quay.io=quay-proxy")
}

// mirrorProxyFor is mirrorProxy with the given --mirror entries. A paged
// tags list (n=) is answered with a Link to its next page, in Nexus's
// relative-with-prefix shape.
func mirrorProxyFor(t *testing.T, mirrors ...string) (mirror, team string, seen func() []seenRequest, registries <-chan string) {
	t.Helper()
	var (
		mu   sync.Mutex
		reqs []seenRequest
	)
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return // health probes
		}
		mu.Lock()
		reqs = append(reqs, seenRequest{r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Clone()})
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/tags/list") && r.URL.Query().Has("n") {
			w.Header().Set("Link", "<"+r.URL.EscapedPath()+"?n=2&last=b>; rel=\"next\"")
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	})
	spec, err := upstream.ParseSpec([]string{"http://" + node.addr + "/nexus"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	up := NewUpstreams(spec, upstream.NewSet(spec, logger), UpstreamOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	up.Set().Start(ctx, 50*time.Millisecond)
	tab, err := route.Build(route.Spec{
		Routes:  []string{"team-a.example.com=team-a"},
		Mirrors: mirrors,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	labels := make(chan string, 100)
	observe := func(_ *ConnInfo, _ *http.Request, rec Record) { labels <- rec.Registry }
	p, err := New(Config{Upstreams: up, Transport: tr, Logger: logger, Observe: observe})
	if err != nil {
		t.Fatal(err)
	}
	p.SetMirrorAuth("Basic bWlycm9yOnNlY3JldA==")
	serve := func(host string) string {
		ln := testnet.Listen(t)
		srv := &http.Server{Handler: p, ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return NewContext(ctx, &ConnInfo{Table: tab, Route: tab.LookupHost(host), ServerName: host})
		}}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	return serve("mirror.example.com"), serve("team-a.example.com"), func() []seenRequest {
		mu.Lock()
		defer mu.Unlock()
		out := reqs
		reqs = nil
		return out
	}, labels
}

// TestMirrorRequestMapping: what a request on a mirror name reaches in
// Nexus (repository, path, credentials), or that nexmux answers it itself
// with a Docker-style JSON error; the registry its access line and
// metrics carry; and that the mirror's credentials never go with a
// request on an ordinary route.
func TestMirrorRequestMapping(t *testing.T) {
	mirror, team, seen, registries := mirrorProxy(t)
	const mirrorAuth = "Basic bWlycm9yOnNlY3JldA=="
	for _, c := range []struct {
		addr, host, path, auth string
		status                 int
		code                   string // JSON error code of a refusal
		nexus                  string // path+query Nexus sees; "" = never reaches it
		nexusAuth              string
		registry               string // the request's registry label
	}{
		// Nexus's own URL form, under the upstream's context path.
		{mirror, "mirror.example.com", "/nexus/repository/ghcr-proxy/v2/acme/app/manifests/1", "", 200, "", "/nexus/repository/ghcr-proxy/v2/acme/app/manifests/1", mirrorAuth, "ghcr.io"},
		// /v2 without its slash, and the token, on a name that does not
		// mirror docker.io: the first registry's repository; no
		// --mirror-auth-file credentials on a token request.
		{mirror, "mirror.example.com", "/v2", "", 200, "", "/nexus/repository/ghcr-proxy/v2", mirrorAuth, "ghcr.io"},
		{mirror, "mirror.example.com", "/v2/token?scope=repository%3Aacme%2Fapp%3Apull&service=x", "", 200, "", "/nexus/repository/ghcr-proxy/v2/token?scope=repository%3Aacme%2Fapp%3Apull&service=x", "", "ghcr.io"},
		{mirror, "mirror.example.com", "/v2/quay.io/acme/tool/tags/list?n=2&ns=quay.io", "", 200, "", "/nexus/repository/quay-proxy/v2/acme/tool/tags/list?n=2", mirrorAuth, "quay.io"},
		// With ns, a dotted first component naming no registry of this
		// name is part of the image name (containerd sends names as they
		// are; john.smith is a GitLab user); one naming another mirrored
		// registry disagrees with ns.
		{mirror, "mirror.example.com", "/v2/john.smith/app/manifests/1?ns=quay.io", "", 200, "", "/nexus/repository/quay-proxy/v2/john.smith/app/manifests/1", mirrorAuth, "quay.io"},
		{mirror, "mirror.example.com", "/v2/ghcr.io/acme/app/manifests/1?ns=quay.io", "", 400, "NAME_INVALID", "", "", ""},
		// ns is the parameter Go's url.ParseQuery (and Jetty) reads as ns,
		// its name percent-encoded too, and never reaches Nexus; a bare ns
		// is an empty one, refused as "ns=" is.
		{mirror, "mirror.example.com", "/v2/acme/tool/tags/list?n=2&%6es=quay.io", "", 200, "", "/nexus/repository/quay-proxy/v2/acme/tool/tags/list?n=2", mirrorAuth, "quay.io"},
		{mirror, "mirror.example.com", "/v2/acme/tool/tags/list?%6E%73=quay.io&n=2", "", 200, "", "/nexus/repository/quay-proxy/v2/acme/tool/tags/list?n=2", mirrorAuth, "quay.io"},
		{mirror, "mirror.example.com", "/nexus/repository/ghcr-proxy/v2/acme/app/manifests/1?n%73=quay.io", "", 400, "NAME_INVALID", "", "", ""},
		{mirror, "mirror.example.com", "/v2/quay.io/acme/tool/tags/list?ns", "", 400, "NAME_INVALID", "", "", ""},
		{mirror, "mirror.example.com", "/v2/quay.io/acme/tool/tags/list?n=2&ns&ns=quay.io", "", 400, "NAME_INVALID", "", "", ""},
		// Parameters are split at '&' only, as Jetty splits them: ';' is
		// part of the value, which names no registry mirrored here.
		{mirror, "mirror.example.com", "/v2/acme/tool/tags/list?ns=quay.io;x", "", 404, "NAME_UNKNOWN", "", "", ""},
		// A client's own credentials are kept.
		{mirror, "mirror.example.com", "/v2/ghcr.io/acme/app/manifests/1", "Bearer DockerToken.client", 200, "", "/nexus/repository/ghcr-proxy/v2/acme/app/manifests/1", "Bearer DockerToken.client", "ghcr.io"},
		// Only the /v2 registry API is served on a mirror name, in either form.
		{mirror, "mirror.example.com", "/v1/acme/app/manifests/1?ns=ghcr.io", "", 404, "NOT_FOUND", "", "", ""},
		{mirror, "mirror.example.com", "/nexus/repository/ghcr-proxy/v1/acme/app/manifests/1", "", 404, "NOT_FOUND", "", "", ""},
		{mirror, "mirror.example.com", "/nexus/repository/ghcr-proxy/content/acme/app/manifests/1", "", 404, "NOT_FOUND", "", "", ""},
		// An empty image name ("//") names no image.
		{mirror, "mirror.example.com", "/v2//tags/list?ns=ghcr.io", "", 400, "NAME_INVALID", "", "", ""},
		{mirror, "mirror.example.com", "/nexus/repository/ghcr-proxy/v2//tags/list", "", 404, "NOT_FOUND", "", "", ""},
		{mirror, "mirror.example.com", "/nexus/repository/ghcr-proxy/v2//manifests/1", "", 404, "NOT_FOUND", "", "", ""},
		// An ordinary route never gets the mirror's credentials.
		{team, "team-a.example.com", "/v2/app/manifests/1", "", 200, "", "/nexus/repository/team-a/v2/app/manifests/1", "", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.addr+c.path, nil)
		req.Host = c.host
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, body := sendRequest(t, req)
		got := seen()
		select {
		case reg := <-registries:
			if reg != c.registry {
				t.Errorf("%s %s: registry label %q, want %q", c.host, c.path, reg, c.registry)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %s: no access record", c.host, c.path)
		}
		if resp.StatusCode != c.status || c.code != "" && !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Errorf("%s %s: %d %s, want %d %s", c.host, c.path, resp.StatusCode, strings.TrimSpace(body), c.status, c.code)
		}
		switch {
		case c.nexus == "" && len(got) != 0:
			t.Errorf("%s %s reached Nexus as %+v", c.host, c.path, got)
		case c.nexus == "":
		case len(got) != 1:
			t.Errorf("%s %s: Nexus saw %+v, want one request", c.host, c.path, got)
		default:
			pq := got[0].path
			if got[0].query != "" {
				pq += "?" + got[0].query
			}
			if pq != c.nexus || got[0].auth != c.nexusAuth {
				t.Errorf("%s %s reached Nexus as %s with Authorization %q, want %s with %q", c.host, c.path, pq, got[0].auth, c.nexus, c.nexusAuth)
			}
		}
	}
}

// TestMirrorJudgesDecodedPath: a mirror name's decisions are made on the
// path as Jetty decodes it, as every other route's are: "/v%32/" after a
// registry prefix is containerd's misconfiguration as much as "/v2/"
// (the image v2/... of whatever account is named "v2"), and
// "blobs/upload%73" is the upload endpoint, which a mirror does not serve.
// A token request however spelt never gets the mirror's credentials.
func TestMirrorJudgesDecodedPath(t *testing.T) {
	mirror, _, seen, registries := mirrorProxy(t)
	const mirrorAuth = "Basic bWlycm9yOnNlY3JldA=="
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/ghcr.io/v%32/acme/app/manifests/1?ns=ghcr.io", 400, "NAME_INVALID"},
		{"GET", "/v2/ghcr.io/%762/acme/app/manifests/1?ns=ghcr.io", 400, "NAME_INVALID"},
		{"GET", "/v2/ghcr.io/v%2532/acme/app/manifests/1?ns=ghcr.io", 400, "NAME_INVALID"},
		{"GET", "/v2/ghcr.io/v%32?ns=ghcr.io", 400, "NAME_INVALID"},
		{"GET", "/v2/ghcr.io/acme/app/blobs/upload%73?ns=ghcr.io", 404, "NOT_FOUND"},
		{"HEAD", "/v2/ghcr.io/acme/app/blobs/upload%2573", 404, ""},
		{"GET", "/nexus/repository/ghcr-proxy/v2/acme/app/blobs/upload%73", 404, "NOT_FOUND"},
	} {
		req, _ := http.NewRequest(c.method, "http://"+mirror+c.path, nil)
		req.Host = "mirror.example.com"
		resp, body := sendRequest(t, req)
		select {
		case <-registries:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %s: no access record", c.method, c.path)
		}
		if resp.StatusCode != c.status || c.code != "" && !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, resp.StatusCode, strings.TrimSpace(body), c.status, c.code)
		}
		if got := seen(); len(got) != 0 {
			t.Errorf("%s %s reached Nexus as %+v", c.method, c.path, got)
		}
	}
	for _, path := range []string{"/v2/toke%6e", "/v2/toke%256e", "/nexus/repository/ghcr-proxy/v2/toke%6e", "/nexus/repository/ghcr-proxy/v2/toke%256e"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+mirror+path, nil)
		req.Host = "mirror.example.com"
		sendRequest(t, req)
		<-registries
		for _, r := range seen() {
			if r.auth == mirrorAuth {
				t.Errorf("GET %s reached Nexus as %s with the mirror's credentials", path, r.path)
			}
		}
	}
}
