package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nexmux/nexmux/fixtures"
	"github.com/nexmux/nexmux/fixtures/stack"
	"github.com/nexmux/nexmux/internal/config"
	"github.com/nexmux/nexmux/internal/daemon"
)

// An upload follow-up whose credentials Nexus refuses gets Nexus's 401
// challenge whether its tag led to the node or nexmux had to ask the nodes
// (a tag from a replica with another key, or none): the nodes' 401 to the
// question says nothing of the session, and a 404 BLOB_UPLOAD_UNKNOWN
// would have the client start the layer over (or give up: crane) instead
// of logging in again.
func TestHAUploadAskedWithRefusedCredentialsIsUnauthorized(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	a2, _ := replica(t, st)
	trA, trB := viaReplica(st, st.Addr), viaReplica(st, a2)
	loc, _, _ := openUpload(t, st, trA)
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host == "" {
		u.Scheme, u.Host = "https", st.Host("team-a")
	}
	tag := u.Query().Get("_nexmux")
	withTag := func(tg string) string {
		v := *u
		v.RawQuery = "_nexmux=" + tg
		if tg == "" {
			v.RawQuery = ""
		}
		return v.String()
	}
	for _, c := range []struct{ name, url string }{
		{"valid tag", withTag(tag)},
		{"tampered tag", withTag("A" + tag[1:])},
		{"no tag", withTag("")},
	} {
		for _, auth := range []string{"wrong password", "unknown token", "none"} {
			for i, tr := range []http.RoundTripper{trA, trB} {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, c.url, strings.NewReader("chunk"))
				switch auth {
				case "wrong password":
					req.SetBasicAuth(stack.User, "not-"+stack.Password)
				case "unknown token":
					req.Header.Set("Authorization", "Bearer DockerToken.nope")
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("%s, %s, via replica %d: %v", c.name, auth, i, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s, %s, via replica %d: %s (WWW-Authenticate %q), want Nexus's 401 challenge",
						c.name, auth, i, resp.Status, resp.Header.Get("WWW-Authenticate"))
				}
			}
		}
	}
}

// Three replicas, listing the nodes in different orders and spellings, one
// with a secret file: each hands out the same realm; an anonymous pull and
// a logged-in one, round-robin over them one request per connection,
// verify; a token fetched through one replica works on the others; and
// every blob is read from one node whichever replica it went through.
func TestHAReplicasAgreeOnRealmTokensAndBlobNodes(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig(), Fixture: fixtures.Config{Anonymous: true}})
	sf := secretFile(t)
	a2, _, _ := replicaOf(t, st, func(c *config.Config) { slices.Reverse(c.Upstream) }, "")
	a3, _, _ := replicaOf(t, st, func(c *config.Config) {
		for i, u := range c.Upstream {
			c.Upstream[i] = strings.ToUpper(u[:4]) + u[4:] + "/"
		}
		c.AffinitySecretFile = sf
	}, "")
	addrs := []string{st.Addr, a2, a3}
	img, _ := random.Image(64<<10, 4)
	ref := st.Host("team-a") + "/ha/agree:1"
	if err := haPush(t, ref, img, viaReplica(st, st.Addr)); err != nil {
		t.Fatal(err)
	}
	var realms []string
	for _, a := range addrs {
		resp, _ := do(t, viaReplica(st, a), http.MethodGet, "https://"+st.Host("team-a")+"/v2/ha/agree/manifests/1", nil)
		resp.Body.Close()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+st.Host("team-a")+"/v2/", nil)
		resp, err := viaReplica(st, a).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		realms = append(realms, resp.Header.Get("WWW-Authenticate"))
	}
	if realms[0] == "" || realms[0] != realms[1] || realms[0] != realms[2] {
		t.Fatalf("realms differ between replicas: %q", realms)
	}
	for _, n := range st.NexusNodes {
		n.ResetRequests()
	}
	want, _ := img.Digest()
	var dials atomic.Int64
	rr := roundRobin(st, func() []string { return addrs }, &dials)
	r, _ := name.ParseReference(ref)
	for _, auth := range []authn.Authenticator{authn.Anonymous, &authn.Basic{Username: stack.User, Password: stack.Password}} {
		for range 3 {
			got, err := remote.Image(r, remote.WithContext(t.Context()), remote.WithTransport(rr), remote.WithAuth(auth))
			if err != nil {
				t.Fatal(err)
			}
			ls, _ := got.Layers()
			for _, l := range ls {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Fatal(err)
				}
				if err := rc.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if d, _ := got.Digest(); d != want {
				t.Fatalf("pulled %s, want %s", d, want)
			}
		}
	}
	servedBy := blobReaders(st)
	if len(servedBy) < 4 { // the layers
		t.Fatalf("only %d blobs read: %v", len(servedBy), servedBy)
	}
	for p, by := range servedBy {
		if len(by) != 1 {
			t.Errorf("blob %s read from several nodes through the replicas: %v", p, by)
		}
	}

	// A token fetched through one replica works through the others.
	_, body := do(t, viaReplica(st, a2), http.MethodGet, "https://"+st.Host("team-a")+"/v2/token?service=x&scope=repository%3Aha%2Fagree%3Apull", nil)
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.Token == "" {
		t.Fatalf("token: %s", body)
	}
	for i, a := range addrs {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+st.Host("team-a")+"/v2/ha/agree/manifests/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Accept", string(types.DockerManifestSchema2))
		resp, err := viaReplica(st, a).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the token fetched through replica 1 on replica %d: %s", i, resp.Status)
		}
	}
}

// A replica restarts while an upload opened through another is under way:
// with a secret file, or with the key both derive from the same node list,
// the restarted replica takes the upload's tag (a hit, no question to the
// nodes) and the chunks, alternating with the other replica, all reach the
// upload's node.
func TestHAReplicaRestartKeepsUploadTags(t *testing.T) {
	for _, secret := range []bool{false, true} {
		t.Run(map[bool]string{false: "derived", true: "secret"}[secret], func(t *testing.T) {
			cfg := haConfig()
			if secret {
				cfg.AffinitySecretFile = secretFile(t)
			}
			st := stack.Start(t, stack.Options{Nodes: 3, Config: cfg})
			_, d2, _ := replicaOf(t, st, func(c *config.Config) { slices.Reverse(c.Upstream) }, "")
			loc, owner, _ := openUpload(t, st, viaReplica(st, st.Addr))
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := d2.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			a3, d3, _ := replicaOf(t, st, nil, "")
			replicaChunks(t, st, []http.RoundTripper{viaReplica(st, st.Addr), viaReplica(st, a3)}, loc, owner)
			for _, d := range []*daemon.Daemon{st.Daemon, d3} {
				if affinity(t, d, "hit") == 0 {
					t.Error("no follow-up hit its tag")
				}
				for _, res := range []string{"absent", "tampered", "asked", "unknown"} {
					if n := affinity(t, d, res); n != 0 {
						t.Errorf("%v follow-ups %s", n, res)
					}
				}
			}
		})
	}
}

// Forged, moved and mangled tags on an upload's chunks, through replicas
// with the derived key and one with a secret file: every chunk reaches the
// upload's node and only its session's path in the route's repository,
// none is refused, the tag never reaches Nexus, and the blob reads back.
func TestHAReplicasForgedTagsStayOnTheUpload(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	sf := secretFile(t)
	a2, _, _ := replicaOf(t, st, func(c *config.Config) { slices.Reverse(c.Upstream) }, "")
	a3, _, _ := replicaOf(t, st, func(c *config.Config) { c.AffinitySecretFile = sf }, "")
	trs := []http.RoundTripper{viaReplica(st, st.Addr), viaReplica(st, a2), viaReplica(st, a3)}
	tagOf := func(loc string) string {
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		return u.Query().Get("_nexmux")
	}
	loc, owner, uuid := openUpload(t, st, trs[0])
	own := tagOf(loc)
	// Valid tags of other uploads, on another node where one opens there.
	var moved []string
	for i := 0; i < 30 && len(moved) < 4; i++ {
		l, n, _ := openUpload(t, st, trs[i%3])
		if n != owner {
			moved = append(moved, tagOf(l))
		}
	}
	if len(moved) == 0 {
		t.Fatal("no upload opened on another node")
	}
	queries := []string{
		"_nexmux=" + moved[0],
		"_nexmux=" + moved[len(moved)-1],
		"_nexmux=" + own[:10],
		"_nexmux=" + own + own,
		"_nexmux=" + strings.Repeat("A", 4000),
		"_nexmux=" + own + "&_nexmux=" + moved[0],
		"_nexmux=" + moved[0] + "&_nexmux=" + own,
		"_NEXMUX=" + moved[0],
		"_nexmux=" + strings.ToUpper(own),
		"_nexmux=" + url.QueryEscape(own+"=="),
		"_nexmux=",
		"_nexmux",
		"_nexmux=" + moved[0] + "&_nexmux",
		"",
	}
	base := "https://" + st.Host("team-a") + "/v2/ha/app/blobs/uploads/" + uuid
	for _, n := range st.NexusNodes {
		n.ResetRequests()
	}
	var blob []byte
	for i, q := range queries {
		chunk := []byte(fmt.Sprintf("chunk %d;", i))
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, base+"?"+q, strings.NewReader(string(chunk)))
		req.SetBasicAuth(stack.User, stack.Password)
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", len(blob), len(blob)+len(chunk)-1))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := trs[i%3].RoundTrip(req)
		if err != nil {
			t.Fatalf("query %q via replica %d: %v", q, i%3, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("query %q via replica %d: %s %s", q, i%3, resp.Status, body)
		}
		if l := resp.Header.Get("Location"); tagOf(l) == "" || strings.Count(l, "_nexmux=") != 1 {
			t.Errorf("query %q via replica %d: Location %q", q, i%3, l)
		}
		blob = append(blob, chunk...)
	}
	dg := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	resp, body := do(t, trs[1], http.MethodPut, base+"?_nexmux="+moved[0]+"&digest="+url.QueryEscape(dg), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s %s", resp.Status, body)
	}
	session := "/repository/team-a-hosted/v2/ha/app/blobs/uploads/" + uuid
	for _, n := range st.NexusNodes {
		for _, rq := range n.Requests() {
			if rq.Path == "/service/rest/v1/status" || rq.Path == "/service/rest/v1/status/writable" {
				continue
			}
			if rq.Path != session {
				t.Errorf("%s %s reached %s", rq.Method, rq.Path, n.Name())
			}
			if rq.Method != http.MethodGet && n != owner {
				t.Errorf("a %s of the upload reached %s, opened on %s", rq.Method, n.Name(), owner.Name())
			}
			if strings.Contains(rq.RawQuery, "_nexmux=") {
				t.Errorf("the tag reached %s: %q", n.Name(), rq.RawQuery)
			}
		}
	}
	if _, got := do(t, trs[2], http.MethodGet, "https://"+st.Host("team-a")+"/v2/ha/app/blobs/"+dg, nil); got != string(blob) {
		t.Fatalf("the blob reads back as %q, want %q", got, blob)
	}
}

// Replica B reloads over and over (its node list reversed, a node drained,
// removed, listed again) while crane pushes alternate between it and
// replica A, which keeps the first list: every push finishes and verifies,
// and each upload is written on one node only.
func TestHAReplicaReloadingDuringPushes(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	file, writeFile := configFile(t)
	writeFile("drain-timeout: 30s\n")
	a2, d2, _ := replicaOf(t, st, nil, file)
	var urls []string
	for _, n := range st.NexusNodes {
		urls = append(urls, n.URL())
	}
	lists := []string{
		"upstream: [" + urls[2] + ", " + urls[1] + ", " + urls[0] + "]\n",
		"upstream: [" + strings.Join(urls, ", ") + "]\ndrain-upstream: [" + urls[2] + "]\n",
		"upstream: [" + urls[1] + ", " + urls[0] + "]\n",
		"upstream: [" + strings.Join(urls, ", ") + "]\n",
	}
	stop := make(chan struct{})
	done := make(chan int)
	var reloads atomic.Int64
	go func() {
		i := 0
		defer func() { done <- i }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			writeFile(lists[i%len(lists)])
			if err := d2.Reload(); err != nil {
				t.Errorf("reload %d: %v", i, err)
				return
			}
			i++
			reloads.Add(1)
		}
	}()
	tr := &crossing{trs: []http.RoundTripper{viaReplica(st, st.Addr), viaReplica(st, a2)}, last: map[string]int{}}
	var refs []string
	var imgs []v1.Image
	// Four pushes at least, and on until every list was loaded once: how
	// many reloads four pushes span depends on the machine's speed.
	for i := 0; i < 4 || reloads.Load() < int64(len(lists)); i++ {
		if i == 40 {
			break
		}
		img, _ := random.Image(128<<10, 3)
		ref := fmt.Sprintf("%s/ha/reloading:%d", st.Host("team-a"), i)
		if err := haPush(t, ref, img, tr); err != nil {
			close(stop)
			<-done
			t.Fatalf("push %d: %v", i, err)
		}
		refs, imgs = append(refs, ref), append(imgs, img)
	}
	close(stop)
	if n := <-done; n < len(lists) {
		t.Fatalf("only %d reloads during the pushes", n)
	}
	for uuid, by := range uploadWriters(st.NexusNodes) {
		if len(by) != 1 {
			t.Errorf("upload %s written on several nodes: %v", uuid, by)
		}
	}
	for i, ref := range refs {
		want, _ := imgs[i].Digest()
		if got, err := pullDigest(t, ref, tr); err != nil || got != want {
			t.Errorf("pull %s: %v %v, want %s", ref, got, err, want)
		}
	}
}

// killingBody kills the node holding an upload once half of a PATCH body
// has been read from the client.
type killingBody struct {
	io.ReadCloser
	read, at int64
	kill     func()
}

func (k *killingBody) Read(b []byte) (int, error) {
	n, err := k.ReadCloser.Read(b)
	k.read += int64(n)
	if k.kill != nil && k.read >= k.at {
		k.kill()
		k.kill = nil
	}
	return n, err
}

// killOnPatch is a client transport that, at the first PATCH of a layer (over 1 MiB),
// kills the node holding its upload midway through the body.
type killOnPatch struct {
	st     *stack.Stack
	next   http.RoundTripper
	t      *testing.T
	killed atomic.Pointer[fixtures.Node]
	once   sync.Once
}

func (k *killOnPatch) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && r.ContentLength > 1<<20 && r.Body != nil {
		k.once.Do(func() {
			owner, _ := sessionNode(k.t, k.st, r.URL.String())
			r.Body = &killingBody{ReadCloser: r.Body, at: 64 << 10, kill: func() {
				k.killed.Store(owner)
				owner.SetKilled(true)
			}}
		})
	}
	return k.next.RoundTrip(r)
}

// The node holding a layer's upload is killed midway through its PATCH,
// which went through another replica than the POST. crane gets a registry
// error: a JSON 502 when the node took part of the body (which it retries,
// opening the upload on a live node), else (the node gone before the
// PATCH reached it) 404 BLOB_UPLOAD_UNKNOWN, which crane does not retry
// but docker does, as crane does when run again. Either way the push ends
// up whole and the pull verifies.
func TestHAUploadNodeKilledMidPatchAcrossReplicasRetried(t *testing.T) {
	st := stack.Start(t, stack.Options{Nodes: 3, Config: haConfig()})
	a2, _ := replica(t, st)
	kp := &killOnPatch{st: st, t: t, next: &crossing{trs: []http.RoundTripper{viaReplica(st, st.Addr), viaReplica(st, a2)}, last: map[string]int{}}}
	img, _ := random.Image(4<<20, 1)
	ref := st.Host("team-a") + "/ha/killed:1"
	if err := haPush(t, ref, img, kp); err != nil {
		var te *transport.Error
		if !errors.As(err, &te) || len(te.Errors) == 0 || te.Errors[0].Code != transport.BlobUploadUnknownErrorCode {
			t.Fatalf("push: %v, want success or BLOB_UPLOAD_UNKNOWN", err)
		}
		if err := haPush(t, ref, img, kp); err != nil {
			t.Fatalf("push again: %v", err)
		}
	}
	if kp.killed.Load() == nil {
		t.Fatal("no node was killed: no PATCH with a body")
	}
	want, _ := img.Digest()
	if got, err := pullDigest(t, ref, kp); err != nil || got != want {
		t.Fatalf("pull: %v %v, want %s", got, err, want)
	}
}

// A node being added as the README says (listed drained on the replicas
// reloaded first): replica A lists it drained, replica B not yet. Pushes
// alternating between them finish, each upload on one node and none on
// the new node; with a shared secret every follow-up hits its tag on both
// replicas, with derived keys (which differ while the lists do) each is
// found by asking.
func TestHAReplicasNodeListedOnOneDrained(t *testing.T) {
	for _, secret := range []bool{false, true} {
		t.Run(map[bool]string{false: "derived", true: "secret"}[secret], func(t *testing.T) {
			cfg := haConfig()
			if secret {
				cfg.AffinitySecretFile = secretFile(t)
			}
			st := stack.Start(t, stack.Options{Nodes: 3, Config: cfg})
			newNode := st.NexusNodes[2]
			file, writeFile := configFile(t)
			writeFile("drain-upstream: [" + newNode.URL() + "]\n")
			// A: all three, the new one drained; B: the first two.
			a1, d1, _ := replicaOf(t, st, nil, file)
			a2, d2, _ := replicaOf(t, st, func(c *config.Config) { c.Upstream = c.Upstream[:2] }, "")
			tr := &crossing{trs: []http.RoundTripper{viaReplica(st, a1), viaReplica(st, a2)}, last: map[string]int{}}
			img, _ := random.Image(128<<10, 4)
			ref := st.Host("team-a") + "/ha/adding:1"
			if err := haPush(t, ref, img, tr); err != nil {
				t.Fatalf("push: %v", err)
			}
			for uuid, by := range uploadWriters(st.NexusNodes) {
				if len(by) != 1 || by[newNode.Name()] > 0 {
					t.Errorf("upload %s written on %v", uuid, by)
				}
			}
			for i, d := range []*daemon.Daemon{d1, d2} {
				hit, asked := affinity(t, d, "hit"), affinity(t, d, "asked")
				if secret && (hit == 0 || asked != 0) || !secret && asked == 0 {
					t.Errorf("replica %d: %v hits, %v asked", i, hit, asked)
				}
				if n := affinity(t, d, "unknown"); n != 0 {
					t.Errorf("replica %d: %v follow-ups found no node", i, n)
				}
			}
			want, _ := img.Digest()
			if got, err := pullDigest(t, ref, tr); err != nil || got != want {
				t.Fatalf("pull: %v %v, want %s", got, err, want)
			}
		})
	}
}
