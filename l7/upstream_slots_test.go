package l7

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nexmux/nexmux/upstream"
)

// peak counts a node's /repository/ requests in flight and the most seen.
type peak struct{ cur, max atomic.Int64 }

func (p *peak) enter() {
	c := p.cur.Add(1)
	for m := p.max.Load(); c > m && !p.max.CompareAndSwap(m, c); m = p.max.Load() {
	}
}

func (p *peak) leave() { p.cur.Add(-1) }

// digestOn returns a manifest digest whose rendezvous node in set is host.
func digestOn(t *testing.T, set *upstream.Set, host string) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		d := "sha256:" + hex.EncodeToString(sum[:])
		ns, err := set.Pick(upstream.ReadDigest, "team-a@"+d)
		if err != nil {
			t.Fatal(err)
		}
		if ns[0].Host == host {
			return d
		}
	}
	t.Fatal("no digest lands on " + host)
	return ""
}

// holdOn sends a GET that node host keeps open until release is closed.
func holdOn(t *testing.T, addr string, set *upstream.Set, host string) (done chan struct{}) {
	t.Helper()
	d := digestOn(t, set, host)
	done = make(chan struct{})
	go func() {
		defer close(done)
		req := teamRequest(addr, http.MethodGet, "/v2/held/manifests/"+d, nil)
		if resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	return done
}

// The "who knows this upload" question takes a --upstream-max-conns slot
// on each node it asks: with one slot per node and node B's taken by a
// held read, B is asked only once that read is done (before, B served two
// requests at once), and the upload then continues on B.
func TestAskTakesASlot(t *testing.T) {
	var pb peak
	release := make(chan struct{})
	var askedA atomic.Bool
	a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			askedA.Store(true)
			w.WriteHeader(http.StatusNotFound)
		}
	})
	b := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		pb.enter()
		defer pb.leave()
		switch {
		case strings.Contains(r.URL.Path, "/held/"):
			<-release
		case r.Method == http.MethodGet: // the question
			w.Header().Set("Range", "0-0")
			w.WriteHeader(http.StatusNoContent)
		default:
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusAccepted)
		}
	})
	addr, up := haProxy(t, io.Discard, 1, a, b)
	held := holdOn(t, addr, up.Set(), b.addr)
	waitUntil(t, "the held read at B", func() bool { return pb.cur.Load() == 1 })
	go func() {
		waitUntil(t, "the question at A", askedA.Load)
		for i := 0; i < 30 && pb.max.Load() < 2; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		close(release)
	}()
	resp, body := send(t, addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", strings.NewReader("chunk"))
	<-held
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %s %s", resp.Status, body)
	}
	if m := pb.max.Load(); m != 1 {
		t.Fatalf("node B served %d requests at once with --upstream-max-conns 1", m)
	}
}

// A resumed blob download takes a slot on the node it resumes from: with
// one slot per node and B's taken by a held read, the resume waits for it
// (before, B served both at once), then the client gets the whole blob.
func TestResumeTakesASlot(t *testing.T) {
	blob, digest := resumeBlob()
	var pb peak
	release := make(chan struct{})
	var cut atomic.Bool
	var cutter, other atomic.Pointer[string] // the rendezvous node A, and B
	serve := cuttingBlobNode(blob, &cutter, release)
	h := func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		if o := other.Load(); o != nil && *o == local {
			pb.enter()
			defer pb.leave()
		}
		defer func() {
			if v := recover(); v != nil {
				cut.Store(true) // A broke its answer off
				panic(v)
			}
		}()
		serve(w, r)
	}
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 1, a, b)
	// A serves the blob (its rendezvous node) and breaks half way.
	if ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest); ns[0].Host != a.addr {
		a, b = b, a
	}
	cutter.Store(&a.addr)
	other.Store(&b.addr)
	held := holdOn(t, addr, up.Set(), b.addr)
	waitUntil(t, "the held read at B", func() bool { return pb.cur.Load() == 1 })
	go func() {
		waitUntil(t, "the cut at A", cut.Load)
		for i := 0; i < 30 && pb.max.Load() < 2; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		close(release)
	}()
	resp, body := send(t, addr, http.MethodGet, "/v2/app/blobs/"+digest, nil)
	<-held
	if resp.StatusCode != http.StatusOK || body != string(blob) {
		t.Fatalf("blob: %s, %d bytes of %d", resp.Status, len(body), len(blob))
	}
	if m := pb.max.Load(); m != 1 {
		t.Fatalf("node B served %d requests at once with --upstream-max-conns 1", m)
	}
}

// With every node's --upstream-max-conns slots taken, a read that may go to
// any of three nodes waits poolQueueTimeout in all for a slot, not once per
// node (it took three times as long), then gets nexmux's 503.
func TestBusyNodesShareOneQueueWait(t *testing.T) {
	var in peak
	release := make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/held/") {
			in.enter()
			defer in.leave()
			<-release
		}
	}
	nodes := []*haNode{startNode(t, h), startNode(t, h), startNode(t, h)}
	addr, up := haProxy(t, io.Discard, 1, nodes...)
	var held []chan struct{}
	for _, n := range nodes {
		held = append(held, holdOn(t, addr, up.Set(), n.addr))
	}
	defer func() {
		close(release)
		for _, h := range held {
			<-h
		}
	}()
	waitUntil(t, "a held read on every node", func() bool { return in.cur.Load() == 3 })

	start := time.Now()
	resp, body := send(t, addr, http.MethodGet, "/v2/app/tags/list", nil)
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "busy") {
		t.Fatalf("every slot taken: %s %s", resp.Status, body)
	}
	// One wait is 2 s; one per node would be 6 s.
	if took > poolQueueTimeout+poolQueueTimeout*3/4 {
		t.Fatalf("503 after %v: the queue wait was not shared between the nodes", took.Round(time.Millisecond))
	}
}

// A client that leaves before Nexus answers does not give its slot back
// then: Nexus's thread goes on working on the request (Jetty notices the
// closed connection only when it writes), so a client that sends and
// leaves in a loop (or an HTTP/2 rapid reset) would pile up requests on
// Nexus far beyond --upstream-max-conns. The slot stays taken until
// Nexus answers.
func TestClientGoneBeforeTheAnswerKeepsItsSlot(t *testing.T) {
	arrived := make(chan struct{}, 8)
	release := make(chan struct{})
	node := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		arrived <- struct{}{}
		<-release // a Nexus thread busy elsewhere, deaf to the client
	})
	defer close(release)
	addr, _ := haProxyConfig(t, io.Discard, 1, "team-a", Config{}, "http://"+node.addr)
	get := "GET /v2/app/manifests/1 HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n"
	c1 := stalledClient(t, addr, get)
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("first request never reached Nexus")
	}
	c1.Close()
	c2 := stalledClient(t, addr, get)
	answered := make(chan *http.Response, 1)
	go func() {
		_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, _ := http.ReadResponse(bufio.NewReader(c2), nil)
		answered <- resp
	}()
	select {
	case <-arrived:
		t.Fatal("a second request reached Nexus while the first one's client had left but Nexus still worked on it: want at most --upstream-max-conns 1")
	case resp := <-answered:
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("second request: %v, want 503 (the node's one slot is still busy)", resp)
		}
	}
}

// A request whose client has left goes to no other node: a 503 (or a node
// found down) after the client left ends it there, instead of sending it
// on to every other node for nobody.
func TestClientGoneRequestMovesNoFurther(t *testing.T) {
	arrived := make(chan struct{}, 8)
	// The node answers 503 once nexmux has seen the client leave, not
	// after a fixed time a loaded machine could take to see it.
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free)
	h := func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		arrived <- struct{}{}
		<-release
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	n1, n2 := startNode(t, h), startNode(t, h)
	// The client's request context: done once nexmux saw the client leave.
	clientCtx, wrap := firstClientContext()
	addr, _ := haProxyWrapped(t, io.Discard, 0, "team-a", Config{}, 50*time.Millisecond, wrap, "http://"+n1.addr, "http://"+n2.addr)
	c := stalledClient(t, addr, "GET /v2/app/manifests/1 HTTP/1.1\r\nHost: team-a.example.com\r\n\r\n")
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached Nexus")
	}
	c.Close()
	select {
	case <-(<-clientCtx).Done():
	case <-time.After(10 * time.Second):
		t.Fatal("nexmux did not see the client leave")
	}
	free()
	select {
	case <-arrived:
		t.Fatal("the request of a client that had left went on to the next node")
	case <-time.After(2 * time.Second):
	}
}

// A node too busy to be asked within the question's wait (every
// --upstream-max-conns slot held) may hold the upload: the follow-up gets
// a retryable 503, not 404 BLOB_UPLOAD_UNKNOWN, which would make the client
// start the layer over though the session is intact.
func TestBusyNodeWhileAskingIsNoUnknownUpload(t *testing.T) {
	release := make(chan struct{})
	a := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	b := startNode(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/held/"):
			<-release
		case strings.Contains(r.URL.Path, "/blobs/uploads/"):
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusAccepted)
		}
	})
	addr, up := haProxy(t, io.Discard, 1, a, b)
	held := holdOn(t, addr, up.Set(), b.addr)
	defer func() { close(release); <-held }()
	waitUntil(t, "the held read at B", func() bool { return b.hits.Load() == 1 })
	resp, body := send(t, addr, http.MethodPatch, "/v2/app/blobs/uploads/u1", strings.NewReader("chunk"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"UNAVAILABLE"`) {
		t.Fatalf("PATCH while B is too busy to be asked: %s Retry-After %q %s, want a retryable 503", resp.Status, resp.Header.Get("Retry-After"), body)
	}
}

// clientFrom is an HTTP client whose connections come from ip (a loopback
// address other than 127.0.0.1 is another client address to nexmux).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// heldDownloads sends n GETs of held paths from ip at once and sends each
// answer's status to codes.
func heldDownloads(addr, ip string, n int, codes chan<- int) {
	c := clientFrom(ip)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := c.Do(teamRequest(addr, http.MethodGet, fmt.Sprintf("/v2/held/manifests/%s-%d", ip, i), nil))
			if err != nil {
				codes <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
}

// heldNode is a node that holds every request for a /held/ path until
// release is closed, counting them in held, and answers the rest.
func heldNode(t *testing.T) (n *haNode, held *peak, release chan struct{}) {
	held, release = new(peak), make(chan struct{})
	n = startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/held/") {
			held.enter()
			defer held.leave()
			<-release
		}
	})
	return n, held, release
}

// With --max-requests-per-client set, no client address holds more of a
// node's --upstream-max-conns places than are left free: clients whose
// requests Nexus does not finish (or who stop reading a download, which
// holds its place until --send-timeout) leave places for everyone else.
// Two such clients hold 4 and 2 of 8 places; a third is served at once.
func TestClientsShareANodesPlaces(t *testing.T) {
	n, held, release := heldNode(t)
	addr, _ := haProxyConfig(t, io.Discard, 8, "team-a", Config{MaxRequestsPerClient: 64}, "http://"+n.addr)
	defer close(release)
	codes := make(chan int, 16)
	heldDownloads(addr, "127.0.0.2", 8, codes)
	waitUntil(t, "the first client's requests at the node", func() bool { return held.cur.Load() >= 4 })
	heldDownloads(addr, "127.0.0.3", 8, codes)
	// Beyond their shares the two wait their queue time, then get 503.
	for i := 0; i < 10; i++ {
		select {
		case c := <-codes:
			if c != http.StatusServiceUnavailable {
				t.Fatalf("a request beyond its client's share: status %d, want 503", c)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of the 10 requests beyond the two clients' shares answered; node holds %d", i, held.cur.Load())
		}
	}
	if h := held.cur.Load(); h != 6 {
		t.Errorf("the node holds %d requests of the two clients, want 4 + 2", h)
	}
	// The answer says why, which the busy node's does not.
	resp, err := clientFrom("127.0.0.2").Do(teamRequest(addr, http.MethodGet, "/v2/held/manifests/more", nil))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "its share") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("beyond the share: %s %s", resp.Status, b)
	}
	resp, err = clientFrom("127.0.0.4").Do(teamRequest(addr, http.MethodGet, "/v2/", nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a third client: %s, want 200", resp.Status)
	}
}

// Without per-client limits (--max-requests-per-client 0: every client
// may come through one address, a balancer's) one address may take every
// place.
func TestNoPerClientLimitNoShare(t *testing.T) {
	n, held, release := heldNode(t)
	addr, _ := haProxyConfig(t, io.Discard, 8, "team-a", Config{}, "http://"+n.addr)
	codes := make(chan int, 8)
	heldDownloads(addr, "127.0.0.2", 8, codes)
	waitUntil(t, "all eight requests at the node", func() bool { return held.cur.Load() == 8 })
	close(release)
	for i := 0; i < 8; i++ {
		if c := <-codes; c != http.StatusOK {
			t.Errorf("status %d, want 200", c)
		}
	}
}

// A node's places go to client addresses in shares: each may hold fewer
// than are free when it asks, and a place given back goes to the first
// waiter that may take it, not to one beyond its share.
func TestNodePoolShares(t *testing.T) {
	up := &Upstreams{maxConns: 8}
	addr := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	a, b, c, d, e := addr("10.0.0.1"), addr("10.0.0.2"), addr("10.0.0.3"), addr("10.0.0.4"), addr("10.0.0.5")
	take := func(client netip.Addr) []slot {
		var got []slot
		for {
			wait := time.Duration(0)
			sl, ok := up.acquire(context.Background(), "n", client, &wait)
			if !ok {
				return got
			}
			got = append(got, sl)
		}
	}
	var counts []int
	var held [][]slot
	for _, cl := range []netip.Addr{a, b, c, d} {
		s := take(cl)
		held = append(held, s)
		counts = append(counts, len(s))
	}
	if !slices.Equal(counts, []int{4, 2, 1, 1}) {
		t.Fatalf("places taken by four clients in turn: %v, want [4 2 1 1]", counts)
	}
	got := make(chan netip.Addr, 2)
	wait := func(cl netip.Addr) {
		go func() {
			w := 10 * time.Second
			if sl, ok := up.acquire(context.Background(), "n", cl, &w); ok {
				got <- cl
				sl.release()
			}
		}()
	}
	p, _ := up.pools.m.Load("n")
	waiters := func() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) }
	wait(a)
	waitUntil(t, "the first waiter", func() bool { return waiters() == 1 })
	wait(e)
	waitUntil(t, "the second waiter", func() bool { return waiters() == 2 })
	held[3][0].release() // d's place: free 1, a holds 4
	if first := <-got; first != e {
		t.Fatalf("the place given back went to %v, beyond its share, before %v", first, e)
	}
	for _, s := range held[:3] {
		for _, sl := range s {
			sl.release()
		}
	}
	if w := <-got; w != a {
		t.Fatalf("then %v, want %v", w, a)
	}
	waitUntil(t, "every place back", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.taken == 0 && len(p.held) == 0 })
}

// A client refused only its share of a node (the node has places free for
// others) moves on to the next node at once, as it would from a node it
// cannot reach: waiting there would spend the request's whole 2 s queue
// time on the one node it may not use while the next has room, delaying
// every request beyond the share (before shares it took a place at once).
func TestShareRefusalMovesOnAtOnce(t *testing.T) {
	release := make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/held/") {
			<-release
		}
	}
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxyConfig(t, io.Discard, 2, "team-a", Config{MaxRequestsPerClient: 64}, "http://"+a.addr, "http://"+b.addr)
	defer close(release)
	d := digestOn(t, up.Set(), a.addr)
	c := clientFrom("127.0.0.2")
	go func() {
		if resp, err := c.Do(teamRequest(addr, http.MethodGet, "/v2/held/manifests/"+d, nil)); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	pool := func() *nodePool { p, _ := up.pools.m.Load(a.addr); return p }
	// With 2 places, one held is this client's share of a: half.
	waitUntil(t, "the client's held read on a", func() bool {
		p := pool()
		if p == nil {
			return false
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.taken == 1
	})
	done := make(chan int, 1)
	go func() {
		resp, err := c.Do(teamRequest(addr, http.MethodGet, "/v2/app/manifests/"+d, nil))
		if err != nil {
			done <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	for {
		select {
		case code := <-done:
			if code != http.StatusOK {
				t.Fatalf("beyond its share on a, with b free: status %d, want 200 from b", code)
			}
			return
		case <-time.After(5 * time.Millisecond):
		}
		p := pool()
		p.mu.Lock()
		w := len(p.waiters)
		p.mu.Unlock()
		if w > 0 {
			t.Fatal("the request waits on a, where only its share is refused, while b has places free")
		}
	}
}

// A client waiting beyond its share gets the place its own request gives
// back (a download whose body ends, doneBody) at once, not a 503 when its
// 2 s run out; and every place and per-address count is back at the end.
func TestOwnPlaceBackWakesItsWaiter(t *testing.T) {
	n, held, release := heldNode(t)
	addr, up := haProxyConfig(t, io.Discard, 2, "team-a", Config{MaxRequestsPerClient: 64}, "http://"+n.addr)
	codes := make(chan int, 2)
	heldDownloads(addr, "127.0.0.2", 1, codes)
	waitUntil(t, "the held request at the node", func() bool { return held.cur.Load() == 1 })
	p, _ := up.pools.m.Load(n.addr)
	locked := func(f func() bool) func() bool {
		return func() bool { p.mu.Lock(); defer p.mu.Unlock(); return f() }
	}
	go func() {
		resp, err := clientFrom("127.0.0.2").Do(teamRequest(addr, http.MethodGet, "/v2/app/manifests/latest", nil))
		if err != nil {
			codes <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes <- resp.StatusCode
	}()
	waitUntil(t, "the second request waiting beyond its share", locked(func() bool { return len(p.waiters) == 1 }))
	close(release)
	for i := 0; i < 2; i++ {
		if c := <-codes; c != http.StatusOK {
			t.Fatalf("status %d, want 200 (the waiter was not given its own place back)", c)
		}
	}
	waitUntil(t, "every place back", locked(func() bool { return p.taken == 0 && len(p.held) == 0 && len(p.waiters) == 0 }))
}

// A blob download resumed on another node, with shares on, gives back
// every place it took, on both nodes (the broken attempt's and the
// resume's), exactly once.
func TestResumeGivesBackItsPlaces(t *testing.T) {
	blob, digest := resumeBlob()
	var cutter atomic.Pointer[string]
	h := cuttingBlobNode(blob, &cutter, nil)
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxyConfig(t, io.Discard, 4, "team-a", Config{MaxRequestsPerClient: 64}, "http://"+a.addr, "http://"+b.addr)
	if ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest); ns[0].Host != a.addr {
		a, b = b, a
	}
	cutter.Store(&a.addr)
	resp, err := clientFrom("127.0.0.2").Do(teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != string(blob) {
		t.Fatalf("blob: %s, %d bytes of %d", resp.Status, len(body), len(blob))
	}
	for _, n := range []*haNode{a, b} {
		p, ok := up.pools.m.Load(n.addr)
		if !ok {
			t.Fatalf("no places taken on %s: the download was not resumed there", n.addr)
		}
		waitUntil(t, "every place back on "+n.addr, func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.taken == 0 && len(p.held) == 0
		})
	}
}

// A resume refused only its client's share on the next node moves on to
// the one after at once, as the first attempt does (TestShareRefusalMoves
// OnAtOnce): it does not spend its 2 s waiting where others have room.
func TestResumeShareRefusalMovesOnAtOnce(t *testing.T) {
	blob, digest := resumeBlob()
	var cutter atomic.Pointer[string]
	release := make(chan struct{})
	h := cuttingBlobNode(blob, &cutter, release)
	nodes := []*haNode{startNode(t, h), startNode(t, h), startNode(t, h)}
	addr, up := haProxyConfig(t, io.Discard, 2, "team-a", Config{MaxRequestsPerClient: 64},
		"http://"+nodes[0].addr, "http://"+nodes[1].addr, "http://"+nodes[2].addr)
	defer close(release)
	ns, err := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest)
	if err != nil || len(ns) != 3 {
		t.Fatalf("pick: %v %v", ns, err)
	}
	a, b := ns[0].Host, ns[1].Host
	cutter.Store(&a)
	c := clientFrom("127.0.0.2")
	// The client holds its share (1 of 2) of b, the resume's next node.
	d := digestOn(t, up.Set(), b)
	go func() {
		if resp, err := c.Do(teamRequest(addr, http.MethodGet, "/v2/held/manifests/"+d, nil)); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	pool := func() *nodePool { p, _ := up.pools.m.Load(b); return p }
	waitUntil(t, "the client's held read on b", func() bool {
		p := pool()
		if p == nil {
			return false
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.taken == 1
	})
	type result struct {
		status int
		body   []byte
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Do(teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil))
		if err != nil {
			done <- result{}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, body}
	}()
	for {
		select {
		case r := <-done:
			if r.status != http.StatusOK || string(r.body) != string(blob) {
				t.Fatalf("blob: %d, %d bytes of %d", r.status, len(r.body), len(blob))
			}
			return
		case <-time.After(5 * time.Millisecond):
		}
		p := pool()
		p.mu.Lock()
		w := len(p.waiters)
		p.mu.Unlock()
		if w > 0 {
			t.Fatal("the resume waits on b, where only its client's share is refused, while the third node has room")
		}
	}
}

// resumeBlob is a 128 KiB blob and its digest.
func resumeBlob() ([]byte, string) {
	blob := []byte(strings.Repeat("0123456789abcdef", 8<<10))
	sum := sha256.Sum256(blob)
	return blob, "sha256:" + hex.EncodeToString(sum[:])
}

// cuttingBlobNode serves blob, and ranges of it, on any /repository/ path;
// the node listening on *cutter breaks a whole-blob answer off halfway.
// Paths holding /held/ wait until release is closed (nil: none).
func cuttingBlobNode(blob []byte, cutter *atomic.Pointer[string], release <-chan struct{}) http.HandlerFunc {
	return halfBlobNode(blob, cutter, release, func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
}

// halfBlobNode is cuttingBlobNode with what the node at *half does after
// the first half of a whole-blob answer (flushed) given as then.
func halfBlobNode(blob []byte, half *atomic.Pointer[string], release <-chan struct{}, then func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return
		}
		if release != nil && strings.Contains(r.URL.Path, "/held/") {
			<-release
			return
		}
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()
		if serveRange(w, r, blob) {
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		if c := half.Load(); c == nil || *c != local {
			w.Write(blob)
			return
		}
		w.Write(blob[:len(blob)/2])
		w.(http.Flusher).Flush()
		then(w, r)
	}
}

// serveRange answers a request with a Range header (bytes=FROM-TO) with
// that part of blob, as Nexus does; false when there is none.
func serveRange(w http.ResponseWriter, r *http.Request, blob []byte) bool {
	rg := r.Header.Get("Range")
	if rg == "" {
		return false
	}
	var from, to int
	fmt.Sscanf(rg, "bytes=%d-%d", &from, &to)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(blob)))
	w.Header().Set("Content-Length", strconv.Itoa(to-from+1))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(blob[from : to+1])
	return true
}

// A download resumed on B gives A's place and in-flight count back as it
// leaves A, not once B has sent the rest: A no longer serves it, and a
// place held there keeps others off A (and a removed A's drain waiting)
// for as long as B takes.
func TestResumeLetsGoOfTheBrokenNode(t *testing.T) {
	blob, digest := resumeBlob()
	var cutter atomic.Pointer[string]
	release := make(chan struct{})
	free := sync.OnceFunc(func() { close(release) })
	t.Cleanup(free)
	cut := cuttingBlobNode(blob, &cutter, nil)
	h := func(w http.ResponseWriter, r *http.Request) {
		rg := r.Header.Get("Range")
		if rg == "" {
			cut(w, r)
			return
		}
		// The resume: its first bytes, the rest once released.
		var from, to int
		fmt.Sscanf(rg, "bytes=%d-%d", &from, &to)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to, len(blob)))
		w.Header().Set("Content-Length", strconv.Itoa(to-from+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(blob[from : from+10])
		w.(http.Flusher).Flush()
		<-release
		w.Write(blob[from+10 : to+1])
	}
	a, b := startNode(t, h), startNode(t, h)
	addr, up := haProxy(t, io.Discard, 1, a, b)
	if ns, _ := up.Set().Pick(upstream.ReadDigest, "team-a@"+digest); ns[0].Host != a.addr {
		a, b = b, a
	}
	cutter.Store(&a.addr)
	var na *upstream.Node
	for _, n := range up.Set().Nodes() {
		if n.Host == a.addr {
			na = n
		}
	}
	got := sendLater(teamRequest(addr, http.MethodGet, "/v2/app/blobs/"+digest, nil))
	waitUntil(t, "the resume at B", func() bool { return b.hits.Load() > 0 })
	p, _ := up.pools.m.Load(a.addr)
	waitUntil(t, "A's place and in-flight count back while B sends the rest", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.taken == 0 && na.InFlight() == 0
	})
	free()
	if g := <-got; g.resp == nil || g.resp.StatusCode != http.StatusOK || g.body != string(blob) {
		t.Fatalf("blob: %v, %d bytes of %d", g.resp != nil, len(g.body), len(blob))
	}
}

// A request that passed its first node over for room (its client at its
// share there) and waits on its last node moves back to the first when
// that last node is found down: it was the last node only for want of a
// place, not the last that may serve. It waited there until Nexus's 300 s
// header timeout (seen against the fixture: a blackholed node held such
// reads while the other node had room again). So does one that was still
// waiting for a place on that node, and got the place the first request
// gave back as the node was found down: it is not sent to the down node.
func TestPassedOverNodeTakesTheRequestOfANodeFoundDown(t *testing.T) {
	nodes := [2]*gatedNode{startGatedNode(t, "a"), startGatedNode(t, "b")}
	// Two places a node: one client address holds one of them.
	addr, up := haProxyConfig(t, io.Discard, 2, "team-a", Config{MaxRequestsPerClient: 64}, "http://"+nodes[0].addr, "http://"+nodes[1].addr)
	// A read by digest: every request ranks the nodes alike.
	path := "/v2/app/manifests/sha256:" + strings.Repeat("ab", 32)
	get := func() <-chan string { return getFrom2(addr, path, "") }
	first := get()
	waitUntil(t, "the first request at a node", func() bool { return nodes[0].hits.Load()+nodes[1].hits.Load() == 1 })
	x, y := nodes[0], nodes[1]
	if x.hits.Load() == 0 {
		x, y = y, x
	}
	second := get()
	waitUntil(t, "the second request passed over to the other node", func() bool { return y.hits.Load() == 1 })
	third := get()
	waitUntil(t, "the third request waiting for a place on that node", func() bool {
		p, ok := up.pools.m.Load(y.addr)
		if !ok {
			return false
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.waiters) == 1
	})
	y.statusFails.Store(true)
	defer close(y.gate)
	waitUntil(t, "the node found down", func() bool { return up.Set().ByHost(y.addr).State() == upstream.Down })
	close(x.gate)
	want := "ok from " + string(rune('a'+slices.Index(nodes[:], x)))
	for i, ch := range []<-chan string{first, second, third} {
		select {
		case a := <-ch:
			if !strings.HasPrefix(a, "200") || !strings.HasSuffix(a, want) {
				t.Fatalf("request %d: %s", i+1, a)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d stayed on its node found down while the node it passed over for room had room again (hits there: %d)", i+1, y.hits.Load())
		}
	}
}

// A 503 from the last node a request tried is a lone answer, counted
// toward that node's ejection, only when no other node could have been
// asked: not when the request passed another over for room. Under load a
// 503 storm of one repository on every node (an offline repository, a
// proxy repository's remote down) ejected a node that way, against the
// rule that such a storm ejects none, moving every other repository's
// reads onto the other node.
// So is a reset there, as every node resetting one request ejects none.
func TestRequestsPassedOverForRoomEjectNoNode(t *testing.T) {
	t.Run("503", func(t *testing.T) { passedOverEjectsNone(t, false) })
	t.Run("reset", func(t *testing.T) { passedOverEjectsNone(t, true) })
}

func passedOverEjectsNone(t *testing.T, reset bool) {
	var held atomic.Bool
	gate := make(chan struct{})
	defer close(gate)
	h := func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/repository/") {
			return // status probes
		}
		if held.CompareAndSwap(false, true) {
			<-gate
		} else if reset {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"repository offline"}]}`)
	}
	nodes := []*haNode{startNode(t, h), startNode(t, h)}
	addr, up := haProxyConfig(t, io.Discard, 2, "team-a", Config{MaxRequestsPerClient: 64}, "http://"+nodes[0].addr, "http://"+nodes[1].addr)
	// A read by digest: every request ranks the nodes alike, and the
	// first holds the client's share of the first node.
	path := "/v2/app/manifests/sha256:" + strings.Repeat("cd", 32)
	go func() {
		if resp, err := clientFrom("127.0.0.2").Do(teamRequest(addr, http.MethodGet, path, nil)); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, "the first request held at a node", func() bool { return nodes[0].hits.Load()+nodes[1].hits.Load() == 1 })
	other := nodes[1]
	if other.hits.Load() == 1 {
		other = nodes[0]
	}
	for i := 0; i < 8; i++ {
		resp, err := clientFrom("127.0.0.2").Do(teamRequest(addr, http.MethodGet, path, nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: http.StatusServiceUnavailable, true: http.StatusBadGateway}[reset]; resp.StatusCode != want {
			t.Fatalf("request %d: %s, want %d", i, resp.Status, want)
		}
	}
	if other.hits.Load() != 8 {
		t.Fatalf("%d of the 8 requests reached the node with room, want all", other.hits.Load())
	}
	if n := up.Set().ByHost(other.addr); !up.Set().Takes(n, false) {
		t.Fatal("the node that answered every request passed over to it was ejected for the repository's 503s or resets")
	}
}

// A request with a body that passed its first node over for room, whose
// connection to its last node is still being made when that node is found
// down, goes back to the first node with its body whole: the Transport
// lets go of a body it never sent (closing it), and that attempt was not
// the request's last, so the client's body must stay open for the next.
// So does one whose last node refuses the connection: nothing was sent.
func TestPassedOverNodeTakesTheBodyOfARequestWhoseLastNodeIsFoundDown(t *testing.T) {
	t.Run("dial-hangs", func(t *testing.T) { passedOverWithBody(t, false) })
	t.Run("dial-refused", func(t *testing.T) { passedOverWithBody(t, true) })
}

func passedOverWithBody(t *testing.T, refuse bool) {
	nodes := [2]*gatedNode{startGatedNode(t, "a"), startGatedNode(t, "b")}
	// Dials to the node in hang never connect, as to a blackholed node.
	var hang atomic.Pointer[string]
	dialing := make(chan struct{}, 1)
	stop := make(chan struct{})
	defer close(stop)
	tr := newTransport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h := hang.Load(); h != nil && *h == addr {
			select {
			case dialing <- struct{}{}:
			default:
			}
			if refuse {
				return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-stop:
				return nil, net.ErrClosed
			}
		}
		return upstreamDial(ctx, network, addr)
	}, nil)
	defer tr.CloseIdleConnections()
	addr, up := haProxyConfig(t, io.Discard, 2, "team-a", Config{MaxRequestsPerClient: 64, Transport: tr}, "http://"+nodes[0].addr, "http://"+nodes[1].addr)
	// By digest: both requests rank the nodes alike. The second carries
	// a body, as a token POST or a write does, on the same path.
	path := "/v2/app/manifests/sha256:" + strings.Repeat("ef", 32)
	get := func(body string) <-chan string { return getFrom2(addr, path, body) }
	first := get("")
	waitUntil(t, "the first request at a node", func() bool { return nodes[0].hits.Load()+nodes[1].hits.Load() == 1 })
	x, y := nodes[0], nodes[1]
	if x.hits.Load() == 0 {
		x, y = y, x
	}
	hang.Store(&y.addr)
	second := get("the body")
	select {
	case <-dialing:
	case <-time.After(5 * time.Second):
		t.Fatal("the second request never dialed the other node")
	}
	y.statusFails.Store(true)
	defer close(y.gate)
	waitUntil(t, "the node found down", func() bool { return up.Set().ByHost(y.addr).State() == upstream.Down })
	close(x.gate)
	want := "ok from " + string(rune('a'+slices.Index(nodes[:], x)))
	for i, ch := range []<-chan string{first, second} {
		select {
		case a := <-ch:
			if !strings.HasPrefix(a, "200") || !strings.HasSuffix(a, want) {
				t.Fatalf("request %d: %s", i+1, a)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d got no answer", i+1)
		}
	}
	if b := x.body.Load(); b == nil || *b != "the body" {
		t.Fatalf("the node passed over got body %v, want the request's", b)
	}
}

// gatedNode is a node whose status probe fails once statusFails is set,
// and which answers "ok from NAME" once gate is closed, keeping the body
// it was sent.
type gatedNode struct {
	*haNode
	gate        chan struct{}
	statusFails atomic.Bool
	body        atomic.Pointer[string]
}

func startGatedNode(t *testing.T, name string) *gatedNode {
	nd := &gatedNode{gate: make(chan struct{})}
	nd.haNode = startNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/service/rest/v1/status") {
			if nd.statusFails.Load() {
				w.WriteHeader(http.StatusInternalServerError)
			}
			return
		}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			s := string(b)
			nd.body.Store(&s)
		}
		select {
		case <-nd.gate:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "ok from "+name)
	})
	return nd
}

// getFrom2 sends a GET of path (with body, if any) from 127.0.0.2 in the
// background; the channel gets its status and body, or its error.
func getFrom2(addr, path, body string) <-chan string {
	got := make(chan string, 1)
	go func() {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		resp, err := clientFrom("127.0.0.2").Do(teamRequest(addr, http.MethodGet, path, rd))
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- resp.Status + " " + string(b)
	}()
	return got
}
