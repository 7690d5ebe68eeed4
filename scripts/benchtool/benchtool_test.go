package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// These tests check the tool's plumbing (parsing, arithmetic, rendering);
// nothing here measures time, so they belong in `make test`.

func TestTargetFlag(t *testing.T) {
	var l targetList
	if err := l.Set("nginx-tuned,addr=127.0.0.1:1,host=registry.bench.test,pid=42,tree,metrics=http://x/metrics"); err != nil {
		t.Fatal(err)
	}
	if err := l.Set("many,addr=127.0.0.1:2,host=r00000.bench.test,prefix=/repository/bench,hosts=3,hostfmt=r%05d.bench.test"); err != nil {
		t.Fatal(err)
	}
	a, b := l[0], l[1]
	if a.Name != "nginx-tuned" || a.PID != 42 || !a.Tree || a.Metrics != "http://x/metrics" || a.host(7) != "registry.bench.test" {
		t.Errorf("first target %+v", a)
	}
	if b.Prefix != "/repository/bench" || b.host(4) != "r00001.bench.test" {
		t.Errorf("second target %+v, host(4) %q", b, b.host(4))
	}
	for _, bad := range []string{"x", "x,addr=1", "x,addr=1,host=h,pid=notanumber", "x,addr=1,host=h,color=red"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMedianPercentile(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("median empty = %v", m)
	}
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(100 - i)
	}
	if p := percentile(v, 50); p < 50 || p > 51 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(v, 99); p != 99 {
		t.Errorf("p99 = %v", p)
	}
}

func TestPatternCheck(t *testing.T) {
	p := pattern()
	if len(p) != patternSize || !bytes.Equal(p, pattern()) {
		t.Fatal("pattern is not deterministic")
	}
	// A read that straddles the end of one period and the start of the next.
	got := append(append([]byte{}, p[len(p)-10:]...), p[:10]...)
	if err := checkPattern(p, int64(3*len(p)-10), got); err != nil {
		t.Error(err)
	}
	got[12] ^= 1
	if err := checkPattern(p, int64(3*len(p)-10), got); err == nil {
		t.Error("corrupted byte not noticed")
	}
}

// TestResponseParsing feeds the client's parser what the servers under test
// send: keep-alive, HTTP/1.0 close, chunked bodies, HEAD.
func TestResponseParsing(t *testing.T) {
	for _, c := range []struct {
		name, raw string
		head      bool
		status    int
		length    int64
		close     bool
		bytes     int64
	}{
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 528\r\nDocker-Content-Digest: sha256:x\r\n\r\n", true, 200, 0, false, 0},
		{"length", "HTTP/1.1 202 Accepted\r\nX-Bench-Bytes: 5\r\nContent-Length: 3\r\n\r\nabc", false, 202, 3, false, 5},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n", false, 200, 5, false, 0},
		{"http10", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 200, 2, true, 0},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof", false, 200, 9, true, 0},
		{"keep-alive 1.0", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false, 200, 0, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			hc := &httpConn{br: bufio.NewReader(strings.NewReader(c.raw))}
			var resp response
			if err := hc.readHead(&resp); err != nil {
				t.Fatal(err)
			}
			if !c.head {
				if err := hc.readBody(&resp, nil); err != nil {
					t.Fatal(err)
				}
			}
			if resp.Status != c.status || resp.Length != c.length || resp.close != c.close || resp.Bytes != c.bytes {
				t.Errorf("got status %d length %d close %v bytes %d", resp.Status, resp.Length, resp.close, resp.Bytes)
			}
		})
	}
}

// TestBackend checks the route shape every proxy is measured on.
func TestBackend(t *testing.T) {
	b := &backend{blobSize: 2 * patternSize, node: "node-a"}
	cleanup, err := b.makeBlob()
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	srv := httptest.NewServer(b)
	defer srv.Close()
	get := func(method, path string, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := get("GET", "/repository/bench/v2/bench/app/blobs/"+blobDigest(), "")
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || buf.Len() != 2*patternSize || checkPattern(pattern(), 0, buf.Bytes()) != nil {
		t.Errorf("blob: status %d, %d bytes", resp.StatusCode, buf.Len())
	}
	resp = get("HEAD", "/v2/bench/app/manifests/latest", "")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != manifestDigest || resp.ContentLength != int64(len(manifest)) {
		t.Errorf("manifest HEAD: %d %v", resp.StatusCode, resp.Header)
	}
	resp = get("PATCH", "/repository/bench/v2/bench/app/blobs/uploads/7", "twelve bytes")
	if resp.StatusCode != 202 || resp.Header.Get("X-Bench-Bytes") != "12" || resp.Header.Get("Range") != "0-11" ||
		resp.Header.Get("Location") != "/repository/bench/v2/bench/app/blobs/uploads/7" {
		t.Errorf("PATCH: %d %v", resp.StatusCode, resp.Header)
	}
	resp = get("PUT", "/repository/bench/v2/bench/app/blobs/uploads/7?digest=sha256:abc", "")
	if resp.StatusCode != 201 || resp.Header.Get("Location") != "/repository/bench/v2/bench/app/blobs/sha256:abc" {
		t.Errorf("PUT: %d %v", resp.StatusCode, resp.Header)
	}
	// nexmux with several --upstream nodes probes these on each.
	for _, p := range []string{"/service/rest/v1/status", "/service/rest/v1/status/writable", "/nexus/service/rest/v1/status/writable"} {
		if resp = get("GET", p, ""); resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	if resp = get("GET", "/service/rest/v1/repositories", ""); resp.StatusCode != 404 {
		t.Errorf("outside the registry API: %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Bench-Node"); got != "node-a" {
		t.Errorf("X-Bench-Node %q, want node-a", got)
	}
}

func sampleResults() *Results {
	s := func(v float64) Series { return newSeries([]float64{v * 0.9, v, v * 1.1}, 0) }
	return &Results{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Machine: Machine{NProc: 2, CPU: "Test CPU", Kernel: "Linux 6.1 x86_64", Go: "go1.26.8", Nginx: "nginx/1.22.1", Memory: "24 GiB"},
		Settings: Settings{BlobBytes: 1 << 30, Reps: 3, RateConns: 32, RateSeconds: 3, Rounds: 3, HSWorkers: 8,
			HSSeconds: 3, LatencyN: 2000, IdleConns: 10000, ClientGroup: "X25519", ClientProtocol: "TLS 1.3, HTTP/1.1"},
		Targets:   []string{colDirect, colNexmux, colSonatype, colTuned},
		Pull:      map[string]Series{colDirect: s(900), colNexmux: s(800), colSonatype: s(300), colTuned: s(790)},
		Push:      map[string]Series{colDirect: s(1000), colNexmux: s(700), colSonatype: s(600), colTuned: s(650)},
		Rate:      map[string]Series{colDirect: s(45000), colNexmux: s(14000), colSonatype: s(11000), colTuned: s(25000)},
		Handshake: map[string]Series{colDirect: s(3000), colNexmux: s(2900), colSonatype: s(2800), colTuned: s(2950)},
		Latency: map[string]Latency{colDirect: {N: 2000, P50us: 80, P99us: 200}, colNexmux: {N: 2000, P50us: 300, P99us: 600},
			colSonatype: {N: 2000, P50us: 290, P99us: 500}, colTuned: {N: 2000, P50us: 190, P99us: 400}},
		Idle: map[string]Idle{colNexmux: {Conns: 10000, PerConnKiB: 33.1}, colSonatype: {Conns: 10000, PerConnKiB: 20}, colTuned: {Conns: 10000, PerConnKiB: 20}},
		Routes: &Routes{Count: 10000, One: colNexmux, Many: "nexmux-10000-routes", RateOne: s(14000), RateMany: s(13900),
			HandshakeOne: s(2900), HandshakeMany: s(2700)},
		TLS: map[string]string{colNexmux: "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519"},
		CPU: map[string]map[string]CPU{"pull": {colNexmux: {Unit: "ms/GiB", Server: 1200, Backend: 150, Client: 800}}},
	}
}

func TestReport(t *testing.T) {
	res := sampleResults()
	tbl := table(res)
	for _, want := range []string{
		"| blob pull, 1 GiB | MiB/s (higher is better) | 900 | 800 | 300 | 790 | 1.01× | 2.67× | 0.89× |",
		"| HEAD manifest, 32 keep-alive conns | req/s (higher is better) | 45,000 | 14,000 | 11,000 | 25,000 | 0.56× |",
		"| added latency p50 vs direct | µs (lower is better) | — | 220 | 210 | 110 | — | — | — |",
		"| memory per idle TLS conn (10000 conns) | KiB (lower is better) | — | 33.1 | 20.0 | 20.0 |",
		"| HEAD manifest, 32 keep-alive conns (req/s) | 14,000 | 13,900 | 0.993× |",
	} {
		if !strings.Contains(tbl, want) {
			t.Errorf("table lacks %q:\n%s", want, tbl)
		}
	}
	met := map[string]bool{}
	for _, g := range goals(res) {
		met[g.Key] = g.Met()
	}
	want := map[string]bool{"pull-nginx": true, "pull-direct": false, "push-nginx": true, "push-direct": false,
		"rate-nginx": false, "handshake-nginx": false, "idle": false, "routes-rate": true, "routes-handshake": false}
	for k, v := range want {
		if met[k] != v {
			t.Errorf("goal %s met = %v, want %v", k, met[k], v)
		}
	}
	if ct := cpuTable(res); !strings.Contains(ct, "| proxy per GiB pulled (ms) | — | 1,200 | — | — |") {
		t.Errorf("cpu table:\n%s", ct)
	}
	sec := readmeSection(res, tbl, goalsTable(res), "docs/bench/results.png", "3 min 58 s", "")
	for _, want := range []string{"## Performance", "`make bench`", "Test CPU", "nginx/1.22.1", "go1.26.8", "3 min 58 s", "](docs/bench/results.png)"} {
		if !strings.Contains(sec, want) {
			t.Errorf("README section lacks %q", want)
		}
	}
}

// With the Go floor measured, the table gets its column and ratio, and
// the keep-alive and memory goals cite it with this run's numbers.
func TestReportFloor(t *testing.T) {
	res := sampleResults()
	res.Targets = append(res.Targets, colFloor)
	res.Rate[colFloor] = newSeries([]float64{20000}, 0)
	res.Idle[colFloor] = Idle{Conns: 10000, PerConnKiB: 31.5}
	tbl := table(res)
	n := res.Idle[colNexmux]
	n.StackBefore, n.StackAfter = 1<<20, 1<<20+10000*8<<10
	n.HeapBefore, n.HeapAfter = 2<<20, 2<<20+10000*18<<10
	n.Trims = 1
	res.Idle[colNexmux] = n
	for _, want := range []string{
		"| Go ReverseProxy alone | nexmux ÷ nginx, tuned |",
		"| HEAD manifest, 32 keep-alive conns | req/s (higher is better) | 45,000 | 14,000 | 11,000 | 25,000 | 20,000 | 0.56× | 1.27× | 0.31× | 0.70× |",
	} {
		if !strings.Contains(tbl, want) {
			t.Errorf("table lacks %q:\n%s", want, tbl)
		}
	}
	gt := goalsTable(res)
	for _, want := range []string{
		"reached 0.80× nginx tuned, and nexmux 0.70× of that floor",
		"nexmux kept 33.1 KiB per idle connection (goroutine stacks 8.0 KiB, Go heap in use 18.0 KiB, per the runtime's own statistics; memory trims: 1) and the Go floor (Go ReverseProxy alone), which neither releases nor trims, 31.5 KiB",
	} {
		if !strings.Contains(gt, want) {
			t.Errorf("goals lack %q:\n%s", want, gt)
		}
	}
	if strings.Contains(goalsTable(sampleResults()), "In this run the Go floor") {
		t.Error("floor sentences without a floor column")
	}
}

func TestChart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := writePNG(path, chart(sampleResults())); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 500 {
		t.Errorf("chart is %v", b)
	}
}

func TestRSS(t *testing.T) {
	v, err := rssOf(os.Getpid(), true)
	if err != nil || v <= 0 {
		t.Fatalf("rss of self: %d, %v", v, err)
	}
	if cpuTime(os.Getpid(), false) < 0 {
		t.Error("negative CPU time")
	}
}

// The spread sentence pairs the i-th repetition of each side and reports
// the lowest and highest ratio; unpaired values are ignored.
func TestSpreadText(t *testing.T) {
	res := sampleResults()
	res.Push[colNexmux] = newSeries([]float64{900, 1100, 800, 5000}, 0)
	res.Push[colDirect] = newSeries([]float64{1000, 1000, 1000}, 0)
	res.Handshake[colNexmux] = newSeries([]float64{2900, 3000}, 0)
	res.Handshake[colTuned] = newSeries([]float64{3000, 2900}, 0)
	delete(res.Handshake, colSonatype)
	got := spreadText(res)
	want := "round by round: push ÷ TLS direct 0.80-1.10×, handshakes ÷ nginx tuned 0.97-1.03×);"
	if !strings.Contains(got, want) {
		t.Fatalf("spread sentence %q lacks %q", got, want)
	}
	if spreadText(&Results{}) != "" {
		t.Fatal("a spread sentence without repetitions")
	}
}

// The handshake goal sets nexmux's CPU per handshake beside the others'.
func TestHandshakeCPUSentence(t *testing.T) {
	res := sampleResults()
	res.Targets = append(res.Targets, colFloor)
	res.CPU = map[string]map[string]CPU{"handshake": {
		colNexmux:   {Unit: "µs/op", Server: 290.4},
		colTuned:    {Unit: "µs/op", Server: 327},
		colFloor:    {Unit: "µs/op", Server: 299},
		colSonatype: {Unit: "µs/op"}, // not measured: left out
	}}
	want := "In this run nexmux spent 290 µs of CPU per full handshake; nginx, tuned 327 µs, Go ReverseProxy alone 299 µs."
	if gt := goalsTable(res); !strings.Contains(gt, want) {
		t.Fatalf("goals lack %q:\n%s", want, gt)
	}
}

// Paired rounds cancel the machine's drift: each round's ratio counts, not
// the ratio of two medians taken at different times.
func TestPairedRatio(t *testing.T) {
	// The machine slows down over the rounds; the two sides are equal in
	// every round, but their medians come from different rounds.
	one := newSeries([]float64{100, 90, 80, 70}, 0)
	many := newSeries([]float64{100, 90, 80, 70, 10}, 0)
	if r, ok := pairedRatio(many, one); !ok || r != 1 {
		t.Fatalf("pairedRatio = %v, %v; want 1 (the unpaired fifth round ignored)", r, ok)
	}
	if r, ok := pairedRatio(newSeries(nil, 0), one); ok {
		t.Fatalf("pairedRatio without values = %v, true", r)
	}
	// Medians only (no rounds kept): the ratio of the medians.
	if r, ok := pairedRatio(Series{Median: 90}, Series{Median: 100}); !ok || r != 0.9 {
		t.Fatalf("pairedRatio of medians = %v, %v; want 0.9", r, ok)
	}
}

func sampleNodes() *Nodes {
	return &Nodes{Count: 3, One: colNexmux, Many: "nexmux-3-nodes", Streams: 3,
		PullOne: newSeries([]float64{1000, 900, 1100}, 0), PullMany: newSeries([]float64{1010, 950, 1000}, 0),
		RateOne: newSeries([]float64{14000, 13000}, 0), RateMany: newSeries([]float64{13800, 13100}, 0),
		CPUOne: 50, CPUMany: 53,
		Served: map[string]map[string]int{"nexmux-3-nodes": {"127.0.0.1:3": 4, "127.0.0.1:1": 6, "127.0.0.1:2": 5}}}
}

// The node-count row: both ratios with their targets, in the table and
// the goals, and where the pulls went.
func TestReportNodes(t *testing.T) {
	res := sampleResults()
	res.Nodes = sampleNodes()
	tbl := table(res)
	for _, want := range []string{
		"| nexmux upstream nodes | 1 node | 3 nodes | 3 ÷ 1 | target |",
		// repetitions' ratios 1.01, 1.056, 0.909: median 1.01
		"| 1,000 | 1,000 | 1.010× (median of the repetitions' ratios) | ≥ 1.00× |",
		"| nexmux's own CPU per HEAD request (µs, lower is better) | 50.0 | 53.0 | 1.060× | ≤ 1.05× |",
		"127.0.0.1:1 6, 127.0.0.1:2 5, 127.0.0.1:3 4.",
	} {
		if !strings.Contains(tbl, want) {
			t.Errorf("table lacks %q:\n%s", want, tbl)
		}
	}
	met := map[string]bool{}
	for _, g := range goals(res) {
		met[g.Key] = g.Met()
	}
	if !met["nodes-pull"] || met["nodes-cpu"] {
		t.Errorf("goals met %v: want nodes-pull met, nodes-cpu missed (1.06 > 1.05)", met)
	}
	if gt := goalsTable(res); !strings.Contains(gt, "| nexmux's CPU per request with 3 upstream nodes ≤ 1.05× one node | 1.060× | **missed**") {
		t.Errorf("goals table:\n%s", gt)
	}
	if st := settingsText(res); !strings.Contains(st, "Upstream nodes: nexmux with one --upstream and with 3") {
		t.Errorf("settings: %s", st)
	}
	res.Nodes = nil
	if strings.Contains(table(res), "upstream nodes") || len(nodesGoals(res)) != 0 {
		t.Error("no node comparison measured, yet reported")
	}
}

// A partial run replaces only its own measurements in the last full run.
func TestMergeResults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	old := sampleResults()
	old.CPU["nodes: HEAD manifest"] = map[string]CPU{colNexmux: {Unit: "µs/op", Server: 1}}
	old.Previous, old.PreviousStarted = map[string]float64{"pull/nexmux": 700}, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	data, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := &Results{Started: time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC), Machine: old.Machine, Seconds: 100,
		Settings: Settings{NodeStreams: 3, NodeRounds: 9},
		Pull:     map[string]Series{}, Nodes: sampleNodes(), Notes: []string{"waited 3 s"},
		CPU:      map[string]map[string]CPU{"nodes: HEAD manifest": {colNexmux: {Unit: "µs/op", Server: 50}}, "pull": {}},
		Previous: map[string]float64{"pull/nexmux": 800}, PreviousStarted: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}
	got, err := mergeResults(path, fresh, map[string]bool{"nodes": true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Previous, old.Previous) || !got.PreviousStarted.Equal(old.PreviousStarted) {
		t.Errorf("the full run's comparison with the run before it was replaced: %v", got.Previous)
	}
	if got.Nodes == nil || got.Nodes.CPUMany != 53 || got.Settings.NodeStreams != 3 || got.Settings.Reps != 3 {
		t.Errorf("nodes not merged: %+v %+v", got.Nodes, got.Settings)
	}
	if got.Pull[colNexmux].Median != 800 || got.CPU["pull"][colNexmux].Server != 1200 || got.Routes == nil {
		t.Errorf("the full run's other measurements were lost: %+v", got.Pull)
	}
	if got.CPU["nodes: HEAD manifest"][colNexmux].Server != 50 {
		t.Errorf("node CPU not replaced: %+v", got.CPU)
	}
	if n := strings.Join(got.Notes, "\n"); !strings.Contains(n, "BENCH_ONLY=nodes") || !strings.Contains(n, "Partial run: waited 3 s") {
		t.Errorf("notes: %s", n)
	}
	if sec := readmeSection(got, table(got), goalsTable(got), "x.png", "", ""); !strings.Contains(sec, "- "+partialNote+" (2026-02-03 04:05 UTC") {
		t.Errorf("README section does not say the node rows came later:\n%s", sec)
	}
	// No earlier results: the fresh ones as they are.
	if got, err := mergeResults(filepath.Join(t.TempDir(), "none.json"), fresh, map[string]bool{"nodes": true}); err != nil || got != fresh {
		t.Errorf("no earlier file: %v %v", got, err)
	}
}

func TestParsePIDs(t *testing.T) {
	if p, err := parsePIDs("12, 34,56"); err != nil || len(p) != 3 || p[2] != 56 {
		t.Errorf("parsePIDs: %v %v", p, err)
	}
	if p, err := parsePIDs(""); err != nil || len(p) != 0 {
		t.Errorf("empty: %v %v", p, err)
	}
	if _, err := parsePIDs("12,x"); err == nil {
		t.Error("parsePIDs accepted x")
	}
}
