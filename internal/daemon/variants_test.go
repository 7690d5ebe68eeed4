package daemon_test

import (
	"encoding/json"
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

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// Version-dependent Nexus answers (README, "How Nexus behaves"), each met
// over TCP and TLS through nexmux with the fixture switched to the variant.

// authedGet GETs u with Basic credentials, which Nexus takes on every
// Registry API call, and returns the response and its body.
func authedGet(t *testing.T, cl *http.Client, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(stack.User, stack.Password)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Paging Link (tags/list, _catalog) and manifest PUT Location in Nexus's
// three shapes, with and without a context path, must name the public host:
// clients follow Link only on the registry they asked. Groups send no Link.
func TestPagingLinksAndManifestLocationInEveryStyle(t *testing.T) {
	eachLocationShape(t, func(t *testing.T, fx fixtures.Config) {
		st := stack.Start(t, stack.Options{
			Fixture: fx,
			Config:  teamRoutes(),
		})
		push := st.Host("team-a-push")
		opts := st.Remote(ctxT(t))
		img := pushImage(t, st, push+"/page/app:a")
		for _, tag := range []string{"b", "c"} {
			if err := remote.Tag(ref(t, push+"/page/app:a").Context().Tag(tag), img, opts...); err != nil {
				t.Fatalf("tag %s: %v", tag, err)
			}
		}
		pushImage(t, st, push+"/page/other:1")

		st.Nexus.ResetRequests()
		repo, _ := name.NewRepository(push + "/page/app")
		tags, err := remote.List(repo, append(opts, remote.WithPageSize(1))...)
		if err != nil || !slices.Equal(tags, []string{"a", "b", "c"}) {
			t.Fatalf("tags one per page: %v %v, want [a b c]", tags, err)
		}
		reg, _ := name.NewRegistry(push)
		cat, err := remote.Catalog(ctxT(t), reg, append(opts, remote.WithPageSize(1))...)
		if err != nil || !slices.Equal(cat, []string{"page/app", "page/other"}) {
			t.Fatalf("catalog one per page: %v %v", cat, err)
		}
		var pages int
		for _, r := range st.Nexus.Requests() {
			if strings.Contains(r.Path, "/tags/list") && strings.Contains(r.RawQuery, "last=") {
				pages++
			}
		}
		if pages < 2 {
			t.Fatalf("the client followed %d Link headers of tags/list, want 2 at least", pages)
		}

		cl := &http.Client{Transport: st.Transport()}
		resp, _ := authedGet(t, cl, "https://"+push+"/v2/page/app/tags/list?n=1", nil)
		if want := `<https://` + push + `/v2/page/app/tags/list?n=1&last=a>; rel="next"`; resp.Header.Get("Link") != want {
			t.Errorf("tags Link %q, want %q", resp.Header.Get("Link"), want)
		}
		resp, _ = authedGet(t, cl, "https://"+push+"/v2/_catalog?n=1&last=page%2Fapp", nil)
		if want := `<https://` + push + `/v2/_catalog?n=1&last=page%2Fother>; rel="next"`; resp.Header.Get("Link") != want {
			t.Errorf("catalog Link %q, want %q", resp.Header.Get("Link"), want)
		}

		// Manifest PUT: Location names the public host.
		raw, _ := img.RawManifest()
		mt, _ := img.MediaType()
		d, _ := img.Digest()
		req, _ := http.NewRequest(http.MethodPut, "https://"+push+"/v2/page/app/manifests/d", strings.NewReader(string(raw)))
		req.Header.Set("Content-Type", string(mt))
		req.SetBasicAuth(stack.User, stack.Password)
		presp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		presp.Body.Close()
		if want := "https://" + push + "/v2/page/app/manifests/" + d.String(); presp.StatusCode != http.StatusCreated || presp.Header.Get("Location") != want {
			t.Errorf("manifest PUT: %d Location %q, want 201 %q", presp.StatusCode, presp.Header.Get("Location"), want)
		}

		// The group pages without Link; unpaged it lists everything.
		resp, body := authedGet(t, cl, "https://"+st.Host("team-a")+"/v2/page/app/tags/list?n=1", nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Link") != "" {
			t.Errorf("group tags page: %d Link %q %s, want 200 without Link", resp.StatusCode, resp.Header.Get("Link"), body)
		}
		grepo, _ := name.NewRepository(st.Host("team-a") + "/page/app")
		if tags, err := remote.List(grepo, opts...); err != nil || !slices.Equal(tags, []string{"a", "b", "c", "d"}) {
			t.Errorf("group tags: %v %v", tags, err)
		}
	})
}

// forwardingFront is a proxy between nexmux and Nexus (an ingress in front
// of the Nexus pod) that sets forwarding headers of its own with set.
func forwardingFront(t *testing.T, nexusURL string, set func(in, out *http.Request)) string {
	t.Helper()
	target, err := url.Parse(nexusURL)
	if err != nil {
		t.Fatal(err)
	}
	ctxPath := target.Path
	target.Path = ""
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
		pr.Out.Host = pr.In.Host
		set(pr.In, pr.Out)
	}}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL + ctxPath
}

// Nexus builds realms and absolute URLs from forwarding headers; a proxy
// between nexmux and Nexus may set its own ("host:PORT:PORT", "http://",
// "null://"). Clients must still get public https URLs and push and pull.
func TestRealmBaseVariantsRepaired(t *testing.T) {
	cases := []struct {
		name  string
		null  bool // Nexus versions that build "null://" without a proto
		front func(in, out *http.Request)
	}{
		{"direct, null scheme variant", true, nil},
		{"x-forwarded-host with port", false, func(in, out *http.Request) {
			out.Header.Set("X-Forwarded-Host", in.Host)
		}},
		{"ingress http proto and port 80", false, func(in, out *http.Request) {
			out.Header.Set("X-Forwarded-Host", in.Host)
			out.Header.Set("X-Forwarded-Port", "80")
			out.Header.Set("X-Forwarded-Proto", "http")
		}},
		{"proxy dropping the proto, null scheme variant", true, func(in, out *http.Request) {
			out.Header.Del("X-Forwarded-Proto")
		}},
		// A TLS-ending front that drops the proto but passes its port:
		// "http://host:443" realms in the field.
		{"proxy dropping the proto, port 443", false, func(in, out *http.Request) {
			out.Header.Del("X-Forwarded-Proto")
			out.Header.Set("X-Forwarded-Port", "443")
		}},
		// Two fronts that each append: a comma list (Nexus takes it raw).
		{"x-forwarded-host comma list", false, func(in, out *http.Request) {
			out.Header.Set("X-Forwarded-Host", in.Host+", nexus-internal.svc:8081")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := stack.Options{
				Fixture: fixtures.Config{LocationStyle: fixtures.LocationAbsolute, NullSchemeWithoutProto: c.null},
				Config:  teamRoutes(),
			}
			if c.front != nil {
				o.Upstreams = func(nexusURL string) []string { return []string{forwardingFront(t, nexusURL, c.front)} }
			}
			st := stack.Start(t, o)
			wantPublicChallenge(t, st)
			if c.front != nil {
				// The variant really happened: Nexus saw the front's headers.
				var fronted bool
				for _, r := range st.Nexus.Requests() {
					fronted = fronted || r.Header.Get("X-Forwarded-Host") != "" || r.Header.Get("X-Forwarded-Proto") == ""
				}
				if !fronted {
					t.Fatal("the front's forwarding headers never reached Nexus")
				}
			}
			img := pushImage(t, st, st.Host("team-a-push")+"/base/app:1")
			pullVerify(t, st, st.Host("team-a")+"/base/app:1", img)

			loc := startUploadLocation(t, &http.Client{Transport: st.Transport()}, "https://"+st.Host("team-a-push")+"/v2/base/app/blobs/uploads/")
			if want := "https://" + st.Host("team-a-push") + "/v2/base/app/blobs/uploads/"; !strings.HasPrefix(loc, want) {
				t.Errorf("upload Location %q, want prefix %q", loc, want)
			}
		})
	}
}

// startUploadLocation starts an upload with Basic credentials and returns
// the 202's Location.
func startUploadLocation(t *testing.T, cl *http.Client, u string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	req.SetBasicAuth(stack.User, stack.Password)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s: %d", u, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// An unrewritten realm makes clients ask ".../repository/R/repository/R/v2/token"
// (3.76 works around it). With or without the workaround, no doubled path
// may reach Nexus, and Nexus's own realm path still gives a token.
func TestDoubledTokenPathNeverReachesNexus(t *testing.T) {
	for _, workaround := range []bool{false, true} {
		t.Run(fmt.Sprintf("workaround=%v", workaround), func(t *testing.T) {
			st := stack.Start(t, stack.Options{
				Fixture: fixtures.Config{ContextPath: "/nexus", DoubledTokenPathWorkaround: workaround},
				Config:  teamRoutes(),
			})
			img := pushImage(t, st, st.Host("team-a-push")+"/dbl/app:1")
			pullVerify(t, st, st.Host("team-a")+"/dbl/app:1", img)

			cl := &http.Client{Transport: st.Transport()}
			resp, body := authedGet(t, cl, "https://"+st.Host("team-a")+"/nexus/repository/team-a/v2/token?service=x&scope=repository%3Adbl%2Fapp%3Apull", nil)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"token":"DockerToken.`) {
				t.Errorf("token at Nexus's own realm path: %d %s", resp.StatusCode, body)
			}
			var tokens int
			for _, r := range st.Nexus.Requests() {
				if strings.Count(r.Path, "/repository/") > 1 {
					t.Errorf("a doubled path reached Nexus: %s %s", r.Method, r.RawPath)
				}
				if r.Path == "/nexus/repository/team-a/v2/token" && r.Status == http.StatusOK {
					tokens++
				}
			}
			if tokens == 0 {
				t.Error("no token request reached the group's token endpoint")
			}
		})
	}
}

// docker's token query (account, client_id, offline_token, service, scope)
// reaches Nexus byte for byte, and a DockerToken is a user key: one issued
// by either repository of a split name reads the other.
func TestDockerTokenRequestAndTokenAcrossRepositories(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneNameWithHosted()})
	img := pushImage(t, st, st.Host("team-a")+"/tok/app:1")
	d, _ := img.Digest()
	cl := &http.Client{Transport: st.Transport()}
	service := url.QueryEscape("https://" + st.Host("team-a") + "/v2/token")

	token := func(scope, wantRepo string) string {
		t.Helper()
		q := "account=" + stack.User + "&client_id=docker&offline_token=true&service=" + service + "&scope=" + scope
		st.Nexus.ResetRequests()
		resp, body := authedGet(t, cl, "https://"+st.Host("team-a")+"/v2/token?"+q, nil)
		var tok struct{ Token string }
		if err := json.Unmarshal([]byte(body), &tok); resp.StatusCode != http.StatusOK || err != nil || tok.Token == "" {
			t.Fatalf("token %s: %d %s", scope, resp.StatusCode, body)
		}
		reqs := st.Nexus.Requests()
		if len(reqs) != 1 || reqs[0].Repo != wantRepo || reqs[0].RawQuery != q {
			t.Fatalf("token %s reached Nexus as %+v, want one request to %s with the query unchanged", scope, reqs, wantRepo)
		}
		return tok.Token
	}
	pushTok := token("repository%3Atok%2Fapp%3Apush%2Cpull", "team-a-hosted")
	pullTok := token("repository%3Atok%2Fapp%3Apull", "team-a")
	// As Nexus issued it: with nexmux's push mark, a manifest GET of the
	// pushed image reads hosted (route.Target.Pick).
	pushTok, _, _ = strings.Cut(pushTok, ".nexmux-push")

	for _, c := range []struct{ tok, host, repo string }{
		{pushTok, st.Host("team-a"), "team-a"},             // hosted's token, group read
		{pullTok, st.Host("team-a-push"), "team-a-hosted"}, // group's token, hosted read
	} {
		st.Nexus.ResetRequests()
		req, _ := http.NewRequest(http.MethodGet, "https://"+c.host+"/v2/tok/app/manifests/"+d.String(), nil)
		req.Header.Set("Authorization", "Bearer "+c.tok)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("manifest GET on %s with another repository's token: %d", c.host, resp.StatusCode)
		}
		for _, r := range st.Nexus.Requests() {
			if r.Repo != c.repo {
				t.Errorf("manifest GET on %s went to %s, want %s", c.host, r.Repo, c.repo)
			}
		}
	}
}

// An unknown repository's 404 and an offline one's 503 reach the client as
// Nexus said them, and take no node away from the other routes.
func TestUnknownAndOfflineRepository(t *testing.T) {
	for _, nodes := range []int{0, 2} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) {
			cfg := teamRoutes()
			cfg.Route = append(cfg.Route, "ghost.nexmux.test=no-such-repo")
			st := stack.Start(t, stack.Options{Config: cfg, Nodes: nodes})
			img := pushImage(t, st, st.Host("team-b-push")+"/still/app:1")
			st.Nexus.SetOnline("team-a", false)
			cl := &http.Client{Transport: st.Transport()}
			for i := 0; i < 10; i++ {
				st.Nexus.ResetRequests()
				resp, body := authedGet(t, cl, "https://"+st.Host("ghost")+"/v2/x/manifests/1", nil)
				if resp.StatusCode != http.StatusNotFound || len(st.Nexus.Requests()) == 0 {
					t.Fatalf("unknown repository: %d %s (Nexus asked %d times), want Nexus's 404", resp.StatusCode, body, len(st.Nexus.Requests()))
				}
				resp, body = authedGet(t, cl, "https://"+st.Host("team-a")+"/v2/x/manifests/1", nil)
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "offline") {
					t.Fatalf("offline repository: %d %s, want Nexus's 503", resp.StatusCode, body)
				}
			}
			pullVerify(t, st, st.Host("team-b")+"/still/app:1", img)
			st.Nexus.SetOnline("team-a", true)
			if resp, body := authedGet(t, cl, "https://"+st.Host("team-a")+"/v2/", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("back online: %d %s", resp.StatusCode, body)
			}
		})
	}
}

// Jetty answers headers over 8 KiB with 431 and closes: pushes fit with
// what nexmux adds, the 431 reaches the client, and its connection goes on.
func TestJettyHeaderLimitThroughNexmux(t *testing.T) {
	st := stack.Start(t, stack.Options{
		Fixture: fixtures.Config{MaxRequestHeaderBytes: fixtures.JettyMaxRequestHeaderBytes},
		Config:  teamRoutes(),
	})
	img := pushImage(t, st, st.Host("team-a-push")+"/jetty/app:1")
	pullVerify(t, st, st.Host("team-a")+"/jetty/app:1", img)

	for _, h2 := range []bool{false, true} {
		cl, _ := protoClient(t, st, h2)
		st.Nexus.ResetRequests()
		resp, _ := authedGet(t, cl, "https://"+st.Host("team-a")+"/v2/", map[string]string{"X-Big": strings.Repeat("a", 9<<10)})
		reqs := st.Nexus.Requests()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || len(reqs) != 1 || reqs[0].Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("h2=%v: 9 KiB of headers: %d (Nexus log %d entries), want Nexus's 431", h2, resp.StatusCode, len(reqs))
		}
		if resp, body := authedGet(t, cl, "https://"+st.Host("team-a")+"/v2/", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("h2=%v: the request after the 431: %d %s", h2, resp.StatusCode, body)
		}
	}
}

// docker search uses v1/search?q= (and v1/_ping), served when the
// repository has V1 enabled: mapped like /v2, query raw; 404 without V1.
func TestV1SearchAndPing(t *testing.T) {
	for _, ctxPath := range []string{"", "/nexus"} {
		t.Run("ctx="+ctxPath, func(t *testing.T) { v1SearchAndPing(t, ctxPath) })
	}
}

func v1SearchAndPing(t *testing.T, ctxPath string) {
	repos := stack.TeamRepos("team-a", "team-b")
	for i := range repos {
		repos[i].V1Enabled = repos[i].Name == "team-a"
	}
	st := stack.Start(t, stack.Options{Config: teamRoutes(), Fixture: fixtures.Config{Repos: repos, ContextPath: ctxPath}})
	pushImage(t, st, st.Host("team-a-push")+"/search/app:1")
	cl := &http.Client{Transport: st.Transport()}

	resp, err := cl.Get("https://" + st.Host("team-a") + "/v1/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("v1/_ping: %d", resp.StatusCode)
	}
	// Anonymous search: the challenge's realm is the public one.
	resp, err = cl.Get("https://" + st.Host("team-a") + "/v1/search?q=search%2Fa&n=25")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := `realm="https://` + st.Host("team-a") + `/v2/token"`; resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Www-Authenticate"), want) {
		t.Errorf("anonymous v1/search: %d %q, want 401 with %s", resp.StatusCode, resp.Header.Get("Www-Authenticate"), want)
	}
	st.Nexus.ResetRequests()
	resp, body := authedGet(t, cl, "https://"+st.Host("team-a")+"/v1/search?q=search%2Fa&n=25", nil)
	var res struct {
		Results []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(body), &res); resp.StatusCode != http.StatusOK || err != nil || len(res.Results) != 1 || res.Results[0].Name != "search/app" {
		t.Errorf("v1/search: %d %s", resp.StatusCode, body)
	}
	if reqs := st.Nexus.Requests(); len(reqs) != 1 || reqs[0].RawPath != ctxPath+"/repository/team-a/v1/search" || reqs[0].RawQuery != "q=search%2Fa&n=25" {
		t.Errorf("v1/search reached Nexus as %+v", reqs)
	}
	if resp, body := authedGet(t, cl, "https://"+st.Host("team-b")+"/v1/search?q=x", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("v1/search without V1: %d %s, want 404", resp.StatusCode, body)
	}
}

// A connector's realm is "<base>/v2/token" and its URLs "/v2/..."; answers
// of that shape (a front serving /repository/R/ with R's connector, proto
// dropped) must still give clients the public https realm.
func TestConnectorShapedAnswers(t *testing.T) {
	var nx atomic.Pointer[fixtures.Server]
	var served atomic.Int64
	st := stack.Start(t, stack.Options{Config: teamRoutes(), Upstreams: func(nexusURL string) []string {
		target, _ := url.Parse(nexusURL)
		rest := httputil.NewSingleHostReverseProxy(target) // status probes and the like
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name, sub, ok := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/repository/"), "/")
			s := nx.Load()
			if !ok || s == nil || !strings.HasPrefix(r.URL.EscapedPath(), "/repository/") {
				rest.ServeHTTP(w, r)
				return
			}
			served.Add(1)
			r2 := r.Clone(r.Context())
			// Without the proto Jetty's own scheme is used: an http://
			// realm nexmux must turn into the public https one.
			r2.Header.Del("X-Forwarded-Proto")
			r2.URL.RawPath = "/" + sub
			r2.URL.Path, _ = url.PathUnescape("/" + sub)
			r2.RequestURI = r2.URL.RequestURI()
			s.Connector(name).ServeHTTP(w, r2)
		}))
		t.Cleanup(front.Close)
		return []string{front.URL}
	}})
	nx.Store(st.Nexus)

	wantPublicChallenge(t, st)
	cl := &http.Client{Transport: st.Transport()}
	img := pushImage(t, st, st.Host("team-a-push")+"/conn/app:1")
	pullVerify(t, st, st.Host("team-a")+"/conn/app:1", img)
	loc := startUploadLocation(t, cl, "https://"+st.Host("team-a-push")+"/v2/conn/app/blobs/uploads/")
	if want := "https://" + st.Host("team-a-push") + "/v2/conn/app/blobs/uploads/"; !strings.HasPrefix(loc, want) {
		t.Errorf("upload Location %q, want prefix %q", loc, want)
	}
	if served.Load() == 0 {
		t.Fatal("no request was answered by a connector")
	}
}

// wantPublicChallenge checks team-a's /v2/ challenge names the public
// https realm, whatever shape Nexus gave it, and keeps the rest of Nexus's
// 401: the API version header docker's ping reads, and the JSON error.
func wantPublicChallenge(t *testing.T, st *stack.Stack) {
	t.Helper()
	resp, err := (&http.Client{Transport: st.Transport()}).Get("https://" + st.Host("team-a") + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantRealm := `realm="https://` + st.Host("team-a") + `/v2/token"`
	if got := resp.Header.Get("Www-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(got, wantRealm) {
		t.Fatalf("challenge: %d %q, want 401 with %s", resp.StatusCode, got, wantRealm)
	}
	if v := resp.Header.Get("Docker-Distribution-Api-Version"); v != "registry/2.0" || !strings.Contains(string(body), `"code":"UNAUTHORIZED"`) {
		t.Errorf("401: Docker-Distribution-Api-Version %q, body %s; want registry/2.0 and Nexus's UNAUTHORIZED error", v, body)
	}
}
