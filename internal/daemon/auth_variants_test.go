package daemon_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
)

// TestAnonymousAccessThroughRoutes: with Nexus's anonymous access on,
// clients pull through a group name and a one-name (split) route with no
// login, by Nexus's anonymous DockerToken too; writes still need a login
// and the client gets Nexus's 401 with the public realm. Switched off,
// anonymous pulls get that 401 as well.
func TestAnonymousAccessThroughRoutes(t *testing.T) {
	cfg := oneNameWithHosted()
	cfg.Route = append(cfg.Route, "team-b-push.nexmux.test=team-b-hosted")
	st := stack.Start(t, stack.Options{Config: cfg, Fixture: fixtures.Config{Anonymous: true, LocationStyle: fixtures.LocationAbsolute}})
	img := pushImage(t, st, st.Host("team-a")+"/anon/app:1")
	idx := seedUpstreamIndex(t, st, "library/base", "3")
	imgB := pushImage(t, st, st.Host("team-b-push")+"/anon/app:1")

	anon := []remote.Option{remote.WithTransport(st.Transport()), remote.WithAuth(authn.Anonymous), remote.WithContext(ctxT(t))}
	pullVerifyWith(t, st.Host("team-a")+"/anon/app:1", img, anon...)
	pullVerifyWith(t, st.Host("team-b")+"/anon/app:1", imgB, anon...)
	// The proxy member's index: HEAD (resolve), then the index, every
	// child and layer, read through the group by an anonymous client.
	wd, _ := idx.Digest()
	if d, err := remote.Head(ref(t, st.Host("team-a")+"/library/base:3"), anon...); err != nil || d.Digest != wd {
		t.Fatalf("anonymous HEAD of the proxy member's index: %v %v, want %s", d, err, wd)
	}
	got, err := remote.Index(ref(t, st.Host("team-a")+"/library/base:3"), anon...)
	if err == nil {
		err = validate.Index(got)
	}
	if err != nil {
		t.Fatalf("anonymous pull of the proxy member's index: %v", err)
	}

	// Nexus's anonymous token (no credentials at the realm) reads too.
	cl := &http.Client{Transport: st.Transport()}
	resp, err := cl.Get("https://" + st.Host("team-a") + "/v2/token?service=x&scope=repository%3Aanon%2Fapp%3Apull")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(tok.Token, "DockerToken.") {
		t.Fatalf("anonymous token: %d %v %q", resp.StatusCode, err, tok.Token)
	}
	bearer := []remote.Option{remote.WithTransport(st.Transport()), remote.WithAuth(&authn.Bearer{Token: tok.Token}), remote.WithContext(ctxT(t))}
	pullVerifyWith(t, st.Host("team-a")+"/anon/app:1", img, bearer...)

	// Writes need a login: Nexus's 401 reaches the client, whose realm is
	// the public one, on the split name and on the hosted repository's.
	img2, _ := random.Image(1024, 1)
	for _, where := range []string{st.Host("team-a") + "/anon/new:1", st.Host("team-a-push") + "/anon/new:1"} {
		err := remote.Write(ref(t, where), img2, anon...)
		if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Errorf("anonymous push to %s: %v, want UNAUTHORIZED", where, err)
		}
		host, _, _ := strings.Cut(where, "/")
		req, _ := http.NewRequest(http.MethodPost, "https://"+host+"/v2/anon/new/blobs/uploads/", nil)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := `Bearer realm="https://` + host + `/v2/token"`
		if ch := resp.Header.Get("Www-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(ch, want) {
			t.Errorf("anonymous upload POST on %s: %d %q, want 401 %s", host, resp.StatusCode, ch, want)
		}
	}
	if err := remote.Write(ref(t, st.Host("team-a")+"/anon/new:1"), img2, bearer...); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("push with the anonymous token: %v, want UNAUTHORIZED", err)
	}

	// Anonymous access switched off: the same pull is refused with the
	// public realm, and a login still pulls.
	st.Nexus.SetAnonymous(false)
	if _, err := remote.Image(ref(t, st.Host("team-a")+"/anon/app:1"), anon...); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("anonymous pull with anonymous access off: %v, want UNAUTHORIZED", err)
	}
	wantPublicChallenge(t, st)
	pullVerify(t, st, st.Host("team-a")+"/anon/app:1", img)
}

// TestHATokenFromOneNodeOnTheOthers: Nexus HA keeps Docker tokens in the
// shared database, so a token one node issued is good on the others: with
// that node gone, the client's token still pulls and pushes through
// nexmux, on the other repository of a split name too.
func TestHATokenFromOneNodeOnTheOthers(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 2, Config: oneNameWithHosted()})
	img := pushImage(t, st, st.Host("team-a")+"/hatok/app:1")
	st.Nexus.ResetRequests()
	resp, body := authedGet(t, &http.Client{Transport: st.Transport()},
		"https://"+st.Host("team-a")+"/v2/token?service=x&scope=repository%3Ahatok%2Fapp%3Apull%2Cpush", nil)
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tok); resp.StatusCode != http.StatusOK || err != nil || tok.Token == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	var issuer string
	for _, r := range st.Nexus.Requests() {
		if strings.HasSuffix(r.Path, "/v2/token") {
			issuer = r.Node
		}
	}
	var gone bool
	for _, n := range st.NexusNodes {
		if n.Name() == issuer {
			if err := n.SetDown(true); err != nil {
				t.Fatal(err)
			}
			gone = true
		}
	}
	if !gone {
		t.Fatalf("no node issued the token (issuer %q)", issuer)
	}
	opts := []remote.Option{remote.WithTransport(st.Transport()), remote.WithAuth(&authn.Bearer{Token: tok.Token}), remote.WithContext(ctxT(t))}
	pullVerifyWith(t, st.Host("team-a")+"/hatok/app:1", img, opts...)
	pushPull(t, st.Host("team-a")+"/hatok/app:2", st.Host("team-a-push")+"/hatok/app:2", opts...)
	for _, r := range st.Nexus.Requests() {
		// Only the token came before the node went (probes aside).
		if r.Node == issuer && strings.Contains(r.Path, "/repository/") && !strings.HasSuffix(r.Path, "/v2/token") {
			t.Errorf("%s %s was served by %s, which is down", r.Method, r.Path, issuer)
		}
	}
}
