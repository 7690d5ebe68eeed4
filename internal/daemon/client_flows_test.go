package daemon_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
)

// Registry API flows less common than push and pull, driven by
// go-containerregistry's remote through nexmux in each of Nexus's URL
// shapes, with and without a context path: an index pushed and read back
// through the push and the group name, an artifact with a subject found by
// the referrers API (Nexus has none: through the tag-schema index the client
// keeps, filtered by artifactType), Accept sent as several header lines, a
// monolithic POST upload, a blob HEAD with Range, DELETE of a tag and of a
// manifest, and a catalog that shows a route only its own repositories.
func TestLessCommonClientFlowsEveryStyle(t *testing.T) {
	eachLocationShape(t, func(t *testing.T, fx fixtures.Config) {
		st := stack.Start(t, stack.Options{
			Fixture: fx,
			Config:  teamRoutes(),
		})
		lessCommonFlows(t, st, false, false)
	})
}

// flowDo sends method to u with Basic credentials and headers hdr.
func flowDo(t *testing.T, cl *http.Client, method, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(stack.User, stack.Password)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	return resp, b.String()
}

// The same flows in the other variants Nexus's versions and settings give:
// force-basic-auth repositories, anonymous access, null:// bases with the
// doubled-token-path workaround, two HA nodes, a front between nexmux and
// Nexus that doubles the port (X-Forwarded-Host with it), and connector
// ports' answers (realm and URLs without the repository prefix).
func TestLessCommonClientFlowsEveryVariant(t *testing.T) {
	runFlowVariants(t, false, []flowVariant{
		{"force basic auth", 0, fixtures.Config{Repos: forceBasicRepos(), LocationStyle: fixtures.LocationAbsolute}, ""},
		{"anonymous", 0, fixtures.Config{Anonymous: true, LocationStyle: fixtures.LocationRelativePrefix}, ""},
		{"null scheme, doubled token path", 0, fixtures.Config{NullSchemeWithoutProto: true, DoubledTokenPathWorkaround: true, LocationStyle: fixtures.LocationAbsolute, ContextPath: "/nexus"}, ""},
		{"two nodes", 2, fixtures.Config{LocationStyle: fixtures.LocationAbsolute}, ""},
		{"front doubling the port", 0, fixtures.Config{LocationStyle: fixtures.LocationAbsolute, ContextPath: "/nexus"}, "port"},
		{"connector answers", 0, fixtures.Config{LocationStyle: fixtures.LocationAbsolute}, "connector"},
	})
}

// The same flows on a one-name route (splitFlowRoutes): writes to the
// hosted repository, reads from the group, on one name.
func TestLessCommonClientFlowsOneName(t *testing.T) {
	runFlowVariants(t, true, []flowVariant{
		{"plain", 0, fixtures.Config{LocationStyle: fixtures.LocationAbsolute}, ""},
		{"force basic auth", 0, fixtures.Config{Repos: forceBasicRepos(), LocationStyle: fixtures.LocationRelative}, ""},
		{"anonymous", 0, fixtures.Config{Anonymous: true, LocationStyle: fixtures.LocationAbsolute}, ""},
		{"front doubling the port", 0, fixtures.Config{LocationStyle: fixtures.LocationAbsolute}, "port"},
		{"connector answers", 0, fixtures.Config{LocationStyle: fixtures.LocationRelativePrefix}, "connector"},
	})
}

// flowVariant is one fixture variant lessCommonFlows runs in.
type flowVariant struct {
	name  string
	nodes int
	fx    fixtures.Config
	front string // "": none, "port": doubling the port, "connector": connector answers
}

func runFlowVariants(t *testing.T, split bool, cases []flowVariant) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := teamRoutes()
			if split {
				cfg = splitFlowRoutes()
			}
			o := stack.Options{Fixture: c.fx, Nodes: c.nodes, Config: cfg}
			var nx atomic.Pointer[fixtures.Server]
			switch c.front {
			case "port":
				o.Upstreams = func(nexusURL string) []string {
					return []string{forwardingFront(t, nexusURL, func(in, out *http.Request) { out.Header.Set("X-Forwarded-Host", in.Host) })}
				}
			case "connector":
				o.Upstreams = connectorFront(t, &nx)
			}
			st := stack.Start(t, o)
			nx.Store(st.Nexus)
			lessCommonFlows(t, st, split, c.fx.Anonymous)
			// The front's variant really happened (the flows reset the
			// log: what is left are the catalog reads).
			var fronted bool
			for _, r := range st.Nexus.Requests() {
				fronted = fronted || c.front == "port" && r.Header.Get("X-Forwarded-Host") != "" ||
					c.front == "connector" && r.Repo != "" && r.Header.Get("X-Forwarded-Proto") == ""
			}
			if c.front != "" && !fronted {
				t.Errorf("no request reached Nexus through the %s front", c.front)
			}
		})
	}
}

// forceBasicRepos is stack.TeamRepos with force-basic-auth on every
// repository.
func forceBasicRepos() []fixtures.Repo {
	rs := stack.TeamRepos("team-a", "team-b")
	for i := range rs {
		rs[i].ForceBasicAuth = true
	}
	return rs
}

// connectorFront answers every repository's requests as its connector
// port would (TestConnectorShapedAnswers), with no X-Forwarded-Proto: an
// http:// realm and connector URLs. nx is the fixture, once started.
func connectorFront(t *testing.T, nx *atomic.Pointer[fixtures.Server]) func(string) []string {
	return func(nexusURL string) []string {
		target, _ := url.Parse(nexusURL)
		rest := httputil.NewSingleHostReverseProxy(target)
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name, sub, ok := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/repository/"), "/")
			s := nx.Load()
			if !ok || s == nil || !strings.HasPrefix(r.URL.EscapedPath(), "/repository/") {
				rest.ServeHTTP(w, r)
				return
			}
			r2 := r.Clone(r.Context())
			r2.Header.Del("X-Forwarded-Proto")
			r2.URL.RawPath = "/" + sub
			r2.URL.Path, _ = url.PathUnescape("/" + sub)
			r2.RequestURI = r2.URL.RequestURI()
			s.Connector(name).ServeHTTP(w, r2)
		}))
		t.Cleanup(front.Close)
		return []string{front.URL}
	}
}

// splitFlowRoutes gives team-a one name for pushes and pulls, and team-b
// its group and push names.
func splitFlowRoutes() config.Config {
	return config.Config{Route: []string{
		"team-a.nexmux.test=pull:team-a,push:team-a-hosted",
		"team-b.nexmux.test=team-b",
		"team-b-push.nexmux.test=team-b-hosted",
	}}
}

// lessCommonFlows runs the flows of TestLessCommonClientFlowsEveryStyle on
// st (teamRoutes; split: splitFlowRoutes, team-a's one name for both;
// anon: reads without credentials).
func lessCommonFlows(t *testing.T, st *stack.Stack, split, anon bool) {
	t.Helper()
	opts := st.Remote(ctxT(t))
	// Reads log in, but with Nexus's anonymous access on they go without
	// credentials, by Nexus's anonymous token, while writes log in.
	ropts := opts
	if anon {
		ropts = []remote.Option{remote.WithTransport(st.Transport()), remote.WithAuth(authn.Anonymous), remote.WithContext(ctxT(t))}
	}
	push, pull := st.Host("team-a-push"), st.Host("team-a")
	if split {
		// One name: writes go to team-a-hosted, reads to the group.
		push = pull
	}

	// Index push and pull, read by digest and by tag on both names.
	idx, err := random.Index(1024, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref(t, push+"/flow/multi:1"), idx, opts...); err != nil {
		t.Fatalf("index push: %v", err)
	}
	wantIdx, _ := idx.Digest()
	for _, host := range []string{push, pull} {
		got, err := remote.Index(ref(t, host+"/flow/multi:1"), ropts...)
		if err == nil {
			err = validate.Index(got)
		}
		if err != nil {
			t.Fatalf("index pull from %s: %v", host, err)
		}
		if d, _ := got.Digest(); d != wantIdx {
			t.Fatalf("index from %s: %s, want %s", host, d, wantIdx)
		}
	}

	// An artifact whose subject is the index, and the referrers
	// listing it.
	subject := v1.Descriptor{MediaType: types.OCIImageIndex, Digest: wantIdx}
	if m, err := idx.IndexManifest(); err == nil {
		raw, _ := idx.RawManifest()
		subject.Size = int64(len(raw))
		subject.MediaType = m.MediaType
	}
	const artType = "application/vnd.nexmux.test.sbom"
	art := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	art = mutate.ConfigMediaType(art, types.MediaType(artType))
	layer, err := random.Layer(256, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	if art, err = mutate.AppendLayers(art, layer); err != nil {
		t.Fatal(err)
	}
	art = mutate.Subject(art, subject).(v1.Image)
	artDigest, _ := art.Digest()
	st.Nexus.ResetRequests()
	if err := remote.Write(ref(t, push+"/flow/multi@"+artDigest.String()), art, opts...); err != nil {
		t.Fatalf("artifact push: %v", err)
	}
	// Nexus has no referrers API (the fixture's 404): the client
	// keeps the tag-schema index (sha256-<hex>) itself, written
	// to the push repository.
	fallback := strings.Replace(wantIdx.String(), ":", "-", 1)
	var wroteTag bool
	for _, r := range st.Nexus.Requests() {
		wroteTag = wroteTag || r.Method == http.MethodPut && r.Repo == "team-a-hosted" &&
			strings.HasSuffix(r.Path, "/v2/flow/multi/manifests/"+fallback) && r.Status == http.StatusCreated
	}
	if !wroteTag {
		t.Fatalf("artifact push: no tag-schema index %s written to team-a-hosted", fallback)
	}
	for _, host := range []string{push, pull} {
		st.Nexus.ResetRequests()
		subjRef, _ := name.NewDigest(host + "/flow/multi@" + wantIdx.String())
		refs, err := remote.Referrers(subjRef, ropts...)
		if err != nil {
			t.Fatalf("referrers from %s: %v", host, err)
		}
		rm, _ := refs.IndexManifest()
		if len(rm.Manifests) != 1 || rm.Manifests[0].Digest != artDigest || rm.Manifests[0].ArtifactType != artType {
			t.Fatalf("referrers from %s: %+v, want the artifact %s of type %s", host, rm.Manifests, artDigest, artType)
		}
		refs, err = remote.Referrers(subjRef, append(ropts[:len(ropts):len(ropts)], remote.WithFilter("artifactType", "application/other"))...)
		if err != nil {
			t.Fatalf("filtered referrers from %s: %v", host, err)
		}
		if rm, _ := refs.IndexManifest(); len(rm.Manifests) != 0 {
			t.Fatalf("referrers of another artifactType from %s: %+v, want none", host, rm.Manifests)
		}
		// Both asked the referrers API first (remote filters by
		// artifactType itself), then read the tag-schema index.
		var api, tag int
		for _, r := range st.Nexus.Requests() {
			if strings.HasSuffix(r.Path, "/v2/flow/multi/referrers/"+wantIdx.String()) && r.Status == http.StatusNotFound {
				api++
			}
			if strings.HasSuffix(r.Path, "/v2/flow/multi/manifests/"+fallback) && r.Status == http.StatusOK {
				tag++
			}
		}
		if api != 2 || tag != 2 {
			t.Errorf("referrers from %s: %d referrers API requests, %d tag-schema reads; want 2, 2", host, api, tag)
		}
	}
	// ?artifactType= (oras, notation send it) reaches Nexus as
	// written, and its 404 reaches the client as a 404 (a client
	// falls back to the tag schema on 404 or 400 only).
	cl := &http.Client{Transport: st.Transport()}
	st.Nexus.ResetRequests()
	resp, body := flowDo(t, cl, http.MethodGet, "https://"+pull+"/v2/flow/multi/referrers/"+wantIdx.String()+"?artifactType=application%2Fvnd.nexmux.test.sbom",
		map[string]string{"Accept": string(types.OCIImageIndex)})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"errors"`) {
		t.Errorf("referrers API: %s %.200s, want Nexus's 404 as a Registry API error", resp.Status, body)
	}
	if rs := st.Nexus.Requests(); len(rs) != 1 || rs[0].RawQuery != "artifactType=application%2Fvnd.nexmux.test.sbom" {
		t.Errorf("referrers API: Nexus got %+v, want the query as the client wrote it", rs)
	}

	// Accept negotiation as distribution's client sends it, one header
	// line per type: every line reaches Nexus, and the index comes back
	// with its type and a Docker-Content-Digest that is the body's.
	for _, host := range []string{push, pull} {
		st.Nexus.ResetRequests()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+host+"/v2/flow/multi/manifests/1", nil)
		req.SetBasicAuth(stack.User, stack.Password)
		req.Header.Add("Accept", string(types.DockerManifestSchema2))
		req.Header.Add("Accept", string(types.OCIImageIndex))
		req.Header.Add("Accept", string(types.DockerManifestList))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != string(types.OCIImageIndex) ||
			resp.Header.Get("Docker-Content-Digest") != wantIdx.String() || fmt.Sprintf("sha256:%x", sha256.Sum256(raw)) != wantIdx.String() {
			t.Errorf("index GET from %s: %s %q digest %q (%d bytes, %v); want 200 %s of digest %s", host, resp.Status,
				resp.Header.Get("Content-Type"), resp.Header.Get("Docker-Content-Digest"), len(raw), err, types.OCIImageIndex, wantIdx)
		}
		var accept []string
		if rs := st.Nexus.Requests(); len(rs) > 0 {
			accept = rs[len(rs)-1].Header.Values("Accept")
		}
		if len(accept) != 3 {
			t.Errorf("index GET from %s: Nexus got Accept %q, want the 3 lines", host, accept)
		}
	}

	// A monolithic upload: one POST with ?digest= and the blob.
	data := "monolithic blob"
	dg := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(data)))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost,
		"https://"+push+"/v2/flow/multi/blobs/uploads/?digest="+url.QueryEscape(dg), strings.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://" + push + "/v2/flow/multi/blobs/" + dg; resp.StatusCode != http.StatusCreated ||
		resp.Header.Get("Location") != want || resp.Header.Get("Docker-Content-Digest") != dg {
		t.Fatalf("monolithic POST: %s Location %q digest %q, want 201 %q", resp.Status, resp.Header.Get("Location"), resp.Header.Get("Docker-Content-Digest"), want)
	}
	// HEAD with Range: the length of the whole blob, no body.
	resp, _ = flowDo(t, cl, http.MethodHead, "https://"+pull+"/v2/flow/multi/blobs/"+dg, map[string]string{"Range": "bytes=0-3"})
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("blob HEAD with Range: %s", resp.Status)
	}
	if resp.Header.Get("Docker-Content-Digest") != dg {
		t.Errorf("blob HEAD with Range: Docker-Content-Digest %q, want %s", resp.Header.Get("Docker-Content-Digest"), dg)
	}

	// DELETE of a tag, then of a manifest by digest.
	img := pushImage(t, st, push+"/flow/del:1")
	if err := remote.Tag(ref(t, push+"/flow/del:1").Context().Tag("2"), img, opts...); err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(push + "/flow/del")
	if err := remote.Delete(repo.Tag("2"), opts...); err != nil {
		t.Fatalf("tag DELETE: %v", err)
	}
	if tags, err := remote.List(repo, ropts...); err != nil || !slices.Equal(tags, []string{"1"}) {
		t.Fatalf("tags after DELETE: %v %v, want [1]", tags, err)
	}
	d, _ := img.Digest()
	if err := remote.Delete(repo.Digest(d.String()), opts...); err != nil {
		t.Fatalf("manifest DELETE: %v", err)
	}
	if _, err := remote.Get(repo.Digest(d.String()), opts...); err == nil {
		t.Fatalf("manifest still served after DELETE")
	}

	// Catalog: team-b's name lists team-b's images only, one
	// per page on a hosted repository (Link followed); a group
	// sends no Link (Nexus), so it is read unpaged.
	pushImage(t, st, st.Host("team-b-push")+"/theirs/app:1")
	groups := map[string]bool{pull: true, st.Host("team-b"): true}
	for host, want := range map[string][]string{
		push:                   {"flow/del", "flow/multi"},
		st.Host("team-b"):      {"theirs/app"},
		st.Host("team-b-push"): {"theirs/app"},
		pull:                   {"flow/del", "flow/multi"},
	} {
		reg, _ := name.NewRegistry(host)
		o := ropts
		if !groups[host] {
			o = append(o[:len(o):len(o)], remote.WithPageSize(1))
		}
		cat, err := remote.Catalog(ctxT(t), reg, o...)
		if err != nil || !slices.Equal(cat, want) {
			t.Errorf("catalog of %s: %v %v, want %v", host, cat, err, want)
		}
	}
}
