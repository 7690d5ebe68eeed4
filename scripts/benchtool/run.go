package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Results is everything one run measured; report renders it.
type Results struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"` // wall time of the measuring
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	Targets  []string  `json:"targets"` // column order

	Pull      map[string]Series `json:"pull"`             // MiB/s per repetition
	Push      map[string]Series `json:"push"`             // MiB/s per repetition
	Rate      map[string]Series `json:"rate"`             // HEAD manifest req/s per round
	Handshake map[string]Series `json:"handshake"`        // full handshakes/s per round
	Resume    map[string]Series `json:"resume,omitempty"` // resumed handshakes/s per round
	Small     []SmallCell       `json:"small,omitempty"`
	// Previous holds the medians of the run before this one (the
	// committed results.json), keyed like spreadRows, for the "vs previous
	// run" column.
	Previous        map[string]float64 `json:"previous,omitempty"`
	PreviousStarted time.Time          `json:"previous_started,omitzero"`
	Latency         map[string]Latency `json:"latency"`
	Idle            map[string]Idle    `json:"idle"`
	Routes          *Routes            `json:"routes,omitempty"`
	Nodes           *Nodes             `json:"nodes,omitempty"`
	// Instructions: scripts/callgrind.sh's counts, added by benchtool instr.
	Instructions *Instructions `json:"instructions,omitempty"`
	// CPU says where the two cores went, per unit of work: the target's
	// processes, the backend and the client. On a machine this small the
	// three share the CPU, so a server's own cost explains its throughput.
	CPU   map[string]map[string]CPU `json:"cpu"` // measure -> target -> CPU
	TLS   map[string]string         `json:"tls"` // what each target negotiated
	Notes []string                  `json:"notes,omitempty"`
}

// Machine says what the numbers were measured on.
type Machine struct {
	NProc  int    `json:"nproc"`
	CPU    string `json:"cpu"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Nginx  string `json:"nginx"`
	Memory string `json:"memory"`
}

// Settings are the knobs the run used.
type Settings struct {
	BlobBytes    int64   `json:"blob_bytes"`
	Reps         int     `json:"reps"`
	RateConns    int     `json:"rate_conns"`
	RateSeconds  float64 `json:"rate_seconds"`
	Rounds       int     `json:"rounds"`
	HSWorkers    int     `json:"handshake_workers"`
	HSSeconds    float64 `json:"handshake_seconds"`
	LatencyN     int     `json:"latency_requests"`
	IdleConns    int     `json:"idle_conns"`
	RouteCount   int     `json:"route_count"`
	RouteRounds  int     `json:"route_rounds"`
	RouteSeconds float64 `json:"route_seconds"`
	NodeStreams  int     `json:"node_streams,omitempty"`
	NodeRounds   int     `json:"node_rounds,omitempty"`
	NodeProcs    int     `json:"node_procs,omitempty"`
	// The small-request matrix.
	SmallGenerators []string `json:"small_generators,omitempty"`
	SmallConns      []int    `json:"small_conns,omitempty"`
	SmallRounds     int      `json:"small_rounds,omitempty"`
	SmallSeconds    float64  `json:"small_seconds,omitempty"`
	ClientGroup     string   `json:"client_group"`
	ClientProtocol  string   `json:"client_protocol"`
}

// Series is one measurement repeated; Median is what the table shows.
type Series struct {
	Values []float64 `json:"values"`
	Median float64   `json:"median"`
	Errors int       `json:"errors,omitempty"`
}

func newSeries(v []float64, errs int) Series {
	return Series{Values: v, Median: median(v), Errors: errs}
}

// CPU is CPU time per unit of work (µs per request or handshake, ms per
// GiB transferred).
type CPU struct {
	Unit    string  `json:"unit"`
	Server  float64 `json:"server"`
	Backend float64 `json:"backend"`
	Client  float64 `json:"client"`
}

// cpuMeter accumulates the CPU time of the processes in a measurement.
type cpuMeter struct {
	server, backend, client time.Duration
	work                    float64
}

type cpuMark struct {
	server, backend, client time.Duration
	busy, idle              time.Duration // the whole machine's
	// others is the CPU time of every process outside the bench (other
	// sessions' builds and tests on a shared machine), reaped children
	// included; see othersCPU.
	others time.Duration
	at     time.Time
}

func (r *runner) mark(t *target) cpuMark {
	m := cpuMark{server: cpuTime(t.PID, t.Tree), client: cpuTime(os.Getpid(), false), at: time.Now()}
	for _, pid := range r.backendPIDs {
		m.backend += cpuTime(pid, false)
	}
	m.busy, m.idle = systemCPU()
	ours := map[int]bool{os.Getpid(): true, t.PID: true}
	for _, pid := range r.backendPIDs {
		ours[pid] = true
	}
	m.others = othersCPU(ours, t.Tree)
	return m
}

// foreign is the share of the machine (in cores) that was busy with
// something other than the processes under test between two marks: other
// work on a shared machine, which makes a round worthless. The kernel's
// own loopback and softirq work shows up here too, so a small share is
// normal.
func foreign(a, b cpuMark, t *target) float64 {
	el := b.at.Sub(a.at)
	if el <= 0 {
		return 0
	}
	ours := (b.server - a.server) + (b.backend - a.backend) + (b.client - a.client)
	if t.PID == 0 && a.server == 0 {
		ours = (b.backend - a.backend) + (b.client - a.client)
	}
	f := float64((b.busy-a.busy)-ours) / float64(el)
	return max(f, 0)
}

func (m *cpuMeter) add(from, to cpuMark, work float64) {
	m.server += to.server - from.server
	m.backend += to.backend - from.backend
	m.client += to.client - from.client
	m.work += work
}

func (m *cpuMeter) per(unit string, scale time.Duration, hasServer bool) CPU {
	if m.work == 0 {
		return CPU{Unit: unit}
	}
	f := func(d time.Duration) float64 { return float64(d) / float64(scale) / m.work }
	c := CPU{Unit: unit, Backend: f(m.backend), Client: f(m.client)}
	if hasServer {
		c.Server = f(m.server)
	}
	return c
}

// Latency of sequential HEAD requests on one keep-alive connection.
type Latency struct {
	N     int     `json:"n"`
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
}

// Idle is the memory cost of idle TLS connections.
type Idle struct {
	Conns       int     `json:"conns"`
	RSSBefore   int64   `json:"rss_before"`
	RSSAfter    int64   `json:"rss_after"`
	PerConnKiB  float64 `json:"per_conn_kib"`
	Alive       int     `json:"alive_checked"` // of the sample re-used after measuring
	Checked     int     `json:"checked"`
	HeapBefore  float64 `json:"go_heap_inuse_before,omitempty"`
	HeapAfter   float64 `json:"go_heap_inuse_after,omitempty"`
	StackBefore float64 `json:"go_stack_inuse_before,omitempty"`
	StackAfter  float64 `json:"go_stack_inuse_after,omitempty"`
	Goroutines  float64 `json:"go_goroutines_after,omitempty"`
	Trims       float64 `json:"nexmux_memory_trims,omitempty"` // during the measurement
}

// Routes compares nexmux with one route against nexmux with many.
type Routes struct {
	Count         int    `json:"count"`
	One           string `json:"one"`
	Many          string `json:"many"`
	RateOne       Series `json:"rate_one"`
	RateMany      Series `json:"rate_many"`
	HandshakeOne  Series `json:"handshake_one"`
	HandshakeMany Series `json:"handshake_many"`
}

type targetList []*target

func (l *targetList) String() string { return fmt.Sprint(len(*l)) }

// Set parses "name,addr=...,host=...,prefix=...,pid=N,tree,metrics=URL,
// hosts=N,hostfmt=FMT,nodes=N".
func (l *targetList) Set(s string) error {
	parts := strings.Split(s, ",")
	t := &target{Name: parts[0]}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		var err error
		switch k {
		case "addr":
			t.Addr = v
		case "host":
			t.Host = v
		case "prefix":
			t.Prefix = v
		case "pid":
			t.PID, err = strconv.Atoi(v)
		case "tree":
			t.Tree = true
		case "metrics":
			t.Metrics = v
		case "hosts":
			t.Hosts, err = strconv.Atoi(v)
		case "hostfmt":
			t.HostFormat = v
		case "nodes":
			t.Nodes, err = strconv.Atoi(v)
		case "pprof":
			t.PProf = v
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return fmt.Errorf("target %q: %v", s, err)
		}
	}
	if t.Name == "" || t.Addr == "" || t.Host == "" {
		return fmt.Errorf("target %q: want NAME,addr=HOST:PORT,host=NAME[,...]", s)
	}
	*l = append(*l, t)
	return nil
}

type runner struct {
	s       Settings
	tls     *tlsConfigs
	targets []*target
	res     *Results
	pat     []byte
	digest  string
	only    map[string]bool
	// backendPIDs are the backends' processes (one per upstream node),
	// for CPU accounting; for the direct target the first is the server.
	backendPIDs []int
	// retried counts measurements run again because other work took the
	// CPU; disturbed those still disturbed after maxRetries.
	retried, disturbed int
	smallDisturbed     int           // small-request rounds with other work above maxForeign
	waited             time.Duration // in waitQuiet
	retryTime          time.Duration // spent in measurements run again
	// hsDialers rotates the handshake loop's source addresses from round
	// to round, so no round inherits the previous one's TIME_WAITs.
	hsDialers int
	// wrk and ab are the outside load generators' paths ("" leaves them
	// out); their Lua scripts go to scriptDir.
	wrk, ab   string
	scriptDir string
	scriptMu  *sync.Mutex
}

func runMain(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var targets, routeTargets targetList
	fs.Var(&targets, "target", "a server under test (repeatable, in column order): NAME,addr=...,host=...[,prefix=/repository/R][,pid=N[,tree]][,metrics=URL]")
	fs.Var(&routeTargets, "routes-target", "nexmux with many routes (hosts=N,hostfmt=FMT), compared with the target named by -routes-base")
	routesBase := fs.String("routes-base", "nexmux", "target the -routes-target is compared with")
	caFile := fs.String("ca", "", "CA certificate `FILE` every target's certificate chains to")
	out := fs.String("out", "results.json", "results `FILE`")
	only := fs.String("only", "", "comma-separated subset of measurements: pull,push,small (rate),handshake,resume,latency,idle,routes,nodes")
	nginxVersion := fs.String("nginx-version", "", "nginx version string for the report")
	backendPIDs := fs.String("backend-pid", "", "the backends' `PIDs` (comma-separated: one per upstream node), for CPU accounting")
	var nodeTargets targetList
	fs.Var(&nodeTargets, "nodes-target", "nexmux with several --upstream nodes (nodes=N), compared with the target named by -nodes-base")
	nodesBase := fs.String("nodes-base", "nexmux", "target (nexmux with one --upstream) the -nodes-target is compared with")
	wrk := fs.String("wrk", "", "wrk `PATH` for the small-request matrix (\"\": leave wrk out)")
	ab := fs.String("ab", "", "ab (ApacheBench) `PATH` for the small-request matrix (\"\": leave ab out)")
	smallConns := fs.String("small-conns", "4,32", "keep-alive connection counts of the small-request matrix")
	previous := fs.String("previous", "", "the previous run's results `FILE` (the committed results.json), for the \"vs previous run\" column")
	profileDir := fs.String("profile", "", "after the small-request matrix, write CPU profiles of the targets with pprof=URL under each generator at the largest connection count to `DIR`")
	merge := fs.String("merge", "", "earlier results `FILE`: keep its measurements and replace only those this run makes (-only)")
	var s Settings
	fs.Int64Var(&s.BlobBytes, "blob-size", 1<<30, "blob size in bytes (must match the backend)")
	fs.IntVar(&s.Reps, "reps", 5, "repetitions of each blob transfer (the median is reported)")
	fs.IntVar(&s.RateConns, "rate-conns", 32, "keep-alive connections for the small-request rate")
	fs.Float64Var(&s.RateSeconds, "rate-seconds", 3, "seconds per round of the small-request rate")
	fs.IntVar(&s.Rounds, "rounds", 3, "interleaved rounds of each rate measurement (the median is reported)")
	fs.IntVar(&s.HSWorkers, "hs-workers", 32, "concurrent handshaking clients (enough to keep the machine busy: with 8 on two cores the Go servers left 10-17% of the CPU idle between round trips)")
	fs.Float64Var(&s.HSSeconds, "hs-seconds", 3, "seconds per round of the handshake rate")
	fs.IntVar(&s.LatencyN, "latency-n", 2000, "sequential requests per target for latency")
	fs.IntVar(&s.IdleConns, "idle-conns", 10000, "idle TLS connections for the memory measurement")
	fs.IntVar(&s.RouteRounds, "route-rounds", 9, "interleaved rounds of the route-count comparison")
	fs.Float64Var(&s.RouteSeconds, "route-seconds", 3, "seconds per round of the route-count comparison")
	fs.IntVar(&s.NodeStreams, "nodes-streams", 3, "concurrent blob pulls (each of its own digest) per repetition of the node-count comparison")
	fs.IntVar(&s.NodeRounds, "nodes-rounds", 9, "interleaved rounds of the node-count CPU comparison")
	fs.IntVar(&s.NodeProcs, "nodes-procs", 0, "bench backend processes serving the nodes (0: one per node)")
	fs.IntVar(&s.SmallRounds, "small-rounds", 3, "interleaved rounds of each small-request cell")
	fs.Float64Var(&s.SmallSeconds, "small-seconds", 2, "seconds per round of each small-request cell")
	_ = fs.Parse(args)
	for f := range strings.SplitSeq(*smallConns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("-small-conns %q: want N[,N...]", *smallConns)
		}
		s.SmallConns = append(s.SmallConns, n)
	}
	s.SmallGenerators = []string{genGo}
	if *wrk != "" {
		s.SmallGenerators = append(s.SmallGenerators, genWrk)
	}
	if *ab != "" {
		s.SmallGenerators = append(s.SmallGenerators, genAb)
	}
	pids, err := parsePIDs(*backendPIDs)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return errors.New("no -target")
	}
	roots, err := readRoots(*caFile)
	if err != nil {
		return err
	}
	s.ClientGroup = "X25519"
	s.ClientProtocol = "TLS 1.3, HTTP/1.1"
	r := &runner{
		s: s, tls: &tlsConfigs{roots: roots}, targets: targets,
		pat: pattern(), digest: blobDigest(), backendPIDs: pids, wrk: *wrk, ab: *ab, scriptMu: &sync.Mutex{},
		res: &Results{
			Started: time.Now(), Machine: machine(*nginxVersion), Settings: s,
			Pull: map[string]Series{}, Push: map[string]Series{}, Rate: map[string]Series{},
			Handshake: map[string]Series{}, Resume: map[string]Series{}, Latency: map[string]Latency{}, Idle: map[string]Idle{},
			TLS: map[string]string{}, CPU: map[string]map[string]CPU{},
		},
	}
	for _, t := range targets {
		r.res.Targets = append(r.res.Targets, t.Name)
	}
	if *only != "" {
		r.only = map[string]bool{}
		for _, m := range strings.Split(*only, ",") {
			if m == "rate" { // the keep-alive row is the matrix's go HEAD cell
				m = "small"
			}
			r.only[m] = true
		}
	}
	if *previous != "" {
		if err := r.loadPrevious(*previous); err != nil {
			return err
		}
	}
	if r.want("small") && (*wrk != "" || *ab != "") {
		dir, err := os.MkdirTemp("", "benchtool-lua")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		r.scriptDir = dir
	}
	ctx := context.Background()
	start := time.Now()

	for _, t := range targets {
		if err := r.preflight(ctx, t, false); err != nil {
			return fmt.Errorf("%s: preflight: %w", t.Name, err)
		}
	}
	for _, t := range append(routeTargets, nodeTargets...) {
		if err := r.preflight(ctx, t, false); err != nil {
			return fmt.Errorf("%s: preflight: %w", t.Name, err)
		}
	}
	// Memory first, while every server process is fresh: later loads leave
	// freed-but-retained memory that new connections would reuse, which
	// would understate the cost.
	if r.want("idle") {
		for _, t := range targets {
			if t.PID == 0 {
				continue
			}
			idle, err := r.idle(ctx, t)
			if err != nil {
				return fmt.Errorf("%s: idle connections: %w", t.Name, err)
			}
			r.res.Idle[t.Name] = idle
		}
	}
	if r.want("pull") || r.want("push") {
		for _, t := range targets {
			if err := r.preflight(ctx, t, true); err != nil {
				return fmt.Errorf("%s: preflight: %w", t.Name, err)
			}
		}
	}
	if r.want("pull") {
		if err := r.transfers(ctx, "pull", r.res.Pull); err != nil {
			return err
		}
	}
	if r.want("push") {
		if err := r.transfers(ctx, "push", r.res.Push); err != nil {
			return err
		}
	}
	if r.want("small") {
		r.small(ctx)
		if *profileDir != "" {
			if err := r.profiles(ctx, *profileDir); err != nil {
				return err
			}
		}
	}
	if r.want("handshake") {
		r.rounds("handshake", targets, r.s.Rounds, r.handshakes, r.res.Handshake)
	}
	if r.want("resume") {
		// As many rounds as a small-request cell: the run stays under 15 min.
		r.rounds("resumed handshake", targets, r.s.SmallRounds, r.resumed, r.res.Resume)
	}
	if r.want("latency") {
		r.latency(ctx)
	}
	if r.want("routes") && len(routeTargets) > 0 {
		var base *target
		for _, t := range targets {
			if t.Name == *routesBase {
				base = t
			}
		}
		if base == nil {
			return fmt.Errorf("-routes-base %q is not a -target", *routesBase)
		}
		many := routeTargets[0]
		s := r.s
		s.Rounds, s.RateSeconds, s.HSSeconds = s.RouteRounds, s.RouteSeconds, s.RouteSeconds
		rr := *r
		rr.s = s
		rate, hs := map[string]Series{}, map[string]Series{}
		pair := []*target{base, many}
		rr.rounds("routes: HEAD manifest", pair, s.Rounds, rr.rate, rate)
		rr.rounds("routes: handshake", pair, s.Rounds, rr.handshakes, hs)
		r.retried, r.disturbed, r.waited = rr.retried, rr.disturbed, rr.waited
		r.res.Routes = &Routes{
			Count: many.Hosts, One: base.Name, Many: many.Name,
			RateOne: rate[base.Name], RateMany: rate[many.Name],
			HandshakeOne: hs[base.Name], HandshakeMany: hs[many.Name],
		}
		r.res.Settings.RouteCount = many.Hosts
	}
	if r.want("nodes") && len(nodeTargets) > 0 {
		var base *target
		for _, t := range targets {
			if t.Name == *nodesBase {
				base = t
			}
		}
		if base == nil {
			return fmt.Errorf("-nodes-base %q is not a -target", *nodesBase)
		}
		if err := r.nodes(ctx, base, nodeTargets[0]); err != nil {
			return err
		}
	}
	if r.waited > 0 {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("The run waited %s in all for other work to leave the CPU before measuring.", r.waited.Round(time.Second)))
	}
	if r.retried > 0 || r.disturbed > 0 {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("%d measurement(s) were run again because other work took more than %.2f cores meanwhile (at most %d times each, for at most %s in all); %d stayed disturbed.",
			r.retried, maxForeign, maxRetries, retryBudget, r.disturbed))
	}
	if r.smallDisturbed > 0 {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("%d small-request round(s) ran while other processes took more than %.2f cores; "+
			"their CPU time is subtracted from the whole machine's (both figures are in the table), their req/s stands as measured.",
			r.smallDisturbed, maxForeign))
	}
	r.res.Seconds = time.Since(start).Seconds()
	res := r.res
	if *merge != "" && r.only != nil {
		if res, err = mergeResults(*merge, r.res, r.only); err != nil {
			return err
		}
	}
	return writeResults(*out, res)
}

// readResults reads a results file; a missing file's error is
// fs.ErrNotExist's.
func readResults(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	res := &Results{}
	if err := json.Unmarshal(data, res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}

func writeResults(path string, res *Results) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

func (r *runner) want(m string) bool { return r.only == nil || r.only[m] }

func (r *runner) path(t *target, rest string) string { return t.Prefix + "/v2/bench/app" + rest }

// preflight checks, before anything is timed, that the target answers
// correctly through the whole path: a verified handshake, a HEAD manifest,
// an upload whose every byte reached the backend, and (full) a blob pull
// whose every byte is the blob's.
func (r *runner) preflight(ctx context.Context, t *target, full bool) error {
	for _, i := range []int{0, 1} {
		host := t.host(i)
		c := newHTTPConn(t, r.tls.config(host, true), host)
		head := requestHead("HEAD", r.path(t, "/manifests/latest"), host, -1, "")
		resp, err := c.request(ctx, head, nil, 0, true, nil)
		if err != nil {
			return fmt.Errorf("HEAD manifest for %s: %w", host, err)
		}
		if resp.Status != 200 {
			return fmt.Errorf("HEAD manifest for %s: status %d", host, resp.Status)
		}
		if i == 0 && c.tc != nil {
			st := c.tc.ConnectionState()
			r.res.TLS[t.Name] = fmt.Sprintf("%s %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID)
		}
		if full {
			if _, err := r.pull(ctx, c, t, host, true); err != nil {
				return err
			}
			n := int64(4 << 20)
			patch := requestHead("PATCH", r.path(t, "/blobs/uploads/preflight"), host, n, "Content-Type: application/octet-stream\r\n")
			resp, err = c.request(ctx, patch, r.pat, n, false, nil)
			if err != nil {
				return fmt.Errorf("PATCH: %w", err)
			}
			if resp.Status != 202 || resp.Bytes != n || !resp.location {
				return fmt.Errorf("PATCH: status %d, backend counted %d of %d bytes", resp.Status, resp.Bytes, n)
			}
		}
		c.Close()
		if t.Hosts == 0 {
			break
		}
	}
	return nil
}

func (r *runner) pull(ctx context.Context, c *httpConn, t *target, host string, verify bool) (time.Duration, error) {
	d, _, err := r.pullBlob(ctx, c, t, host, r.digest, verify)
	return d, err
}

// pullBlob pulls the blob under digest and says which backend node served it.
func (r *runner) pullBlob(ctx context.Context, c *httpConn, t *target, host, digest string, verify bool) (time.Duration, string, error) {
	head := requestHead("GET", r.path(t, "/blobs/"+digest), host, -1, "Accept: */*\r\n")
	var want []byte
	if verify {
		want = r.pat
	}
	start := time.Now()
	resp, err := c.request(ctx, head, nil, 0, false, want)
	d := time.Since(start)
	if err != nil {
		return 0, "", fmt.Errorf("GET blob: %w", err)
	}
	if resp.Status != 200 || resp.Length != r.s.BlobBytes {
		return 0, "", fmt.Errorf("GET blob: status %d, %d of %d bytes", resp.Status, resp.Length, r.s.BlobBytes)
	}
	return d, resp.Node, nil
}

// push is docker's upload of one layer: PATCH with the whole blob, then the
// PUT that commits it (no body).
func (r *runner) push(ctx context.Context, c *httpConn, t *target, host string, id int) (time.Duration, error) {
	up := r.path(t, "/blobs/uploads/"+strconv.Itoa(id))
	patch := requestHead("PATCH", up, host, r.s.BlobBytes, "Content-Type: application/octet-stream\r\n")
	put := requestHead("PUT", up+"?digest="+r.digest, host, 0, "")
	start := time.Now()
	resp, err := c.request(ctx, patch, r.pat, r.s.BlobBytes, false, nil)
	if err != nil {
		return 0, fmt.Errorf("PATCH: %w", err)
	}
	if resp.Status != 202 || resp.Bytes != r.s.BlobBytes {
		return 0, fmt.Errorf("PATCH: status %d, backend counted %d of %d bytes", resp.Status, resp.Bytes, r.s.BlobBytes)
	}
	if resp, err = c.request(ctx, put, nil, 0, false, nil); err != nil {
		return 0, fmt.Errorf("PUT: %w", err)
	}
	if resp.Status != 201 {
		return 0, fmt.Errorf("PUT: status %d", resp.Status)
	}
	return time.Since(start), nil
}

// transfers runs the 1 GiB pulls or pushes: each repetition visits every
// target in turn (interleaved, so drift on a noisy machine spreads over all
// of them), on a connection opened beforehand.
func (r *runner) transfers(ctx context.Context, kind string, out map[string]Series) error {
	vals := map[string][]float64{}
	meters := map[string]*cpuMeter{}
	for rep := 0; rep < r.s.Reps; rep++ {
		for _, t := range r.targets {
			c := newHTTPConn(t, r.tls.config(t.Host, true), t.Host)
			if err := c.connect(ctx); err != nil {
				return fmt.Errorf("%s: %s: %w", t.Name, kind, err)
			}
			var d time.Duration
			var err error
			var m0, m1 cpuMark
			for try := 0; ; try++ {
				r.waitQuiet()
				m0 = r.mark(t)
				if kind == "pull" {
					d, err = r.pull(ctx, c, t, t.Host, false)
				} else {
					d, err = r.push(ctx, c, t, t.Host, rep*10+try)
				}
				m1 = r.mark(t)
				fg := foreign(m0, m1, t)
				if err != nil || fg <= maxForeign || r.noMoreRetries(try) {
					if err == nil && fg > maxForeign {
						r.disturbed++
					}
					break
				}
				r.retried++
				r.retryTime += m1.at.Sub(m0.at)
				log.Printf("%-16s %s #%d: disturbed (other load %.2f cores); again", t.Name, kind, rep+1, fg)
			}
			c.Close()
			if err != nil {
				return fmt.Errorf("%s: %s: %w", t.Name, kind, err)
			}
			if meters[t.Name] == nil {
				meters[t.Name] = &cpuMeter{}
			}
			meters[t.Name].add(m0, m1, float64(r.s.BlobBytes)/(1<<30))
			mibs := float64(r.s.BlobBytes) / (1 << 20) / d.Seconds()
			vals[t.Name] = append(vals[t.Name], mibs)
			log.Printf("%-16s %s #%d: %7.0f MiB/s", t.Name, kind, rep+1, mibs)
		}
	}
	for name, v := range vals {
		out[name] = newSeries(v, 0)
	}
	r.saveCPU(kind, meters, "ms/GiB", time.Millisecond)
	return nil
}

func (r *runner) saveCPU(measure string, meters map[string]*cpuMeter, unit string, scale time.Duration) {
	m := map[string]CPU{}
	for _, t := range r.targets {
		if mt := meters[t.Name]; mt != nil {
			m[t.Name] = mt.per(unit, scale, t.PID != 0)
		}
	}
	for name, mt := range meters {
		if _, ok := m[name]; !ok {
			m[name] = mt.per(unit, scale, true)
		}
	}
	r.res.CPU[measure] = m
}

// sample is one round of a rate measurement.
type sample struct {
	rate   float64
	errs   int
	work   float64 // operations counted
	m0, m1 cpuMark // CPU at the start and end of the counted window
}

// measureFunc measures t for seconds.
type measureFunc func(ctx context.Context, t *target, seconds float64) sample

// maxForeign is how much of the machine (in cores) may be busy with other
// work during a round before the round is run again: on a two-core machine
// shared with other builds, a round that lost half a core measures the
// neighbour, not the server.
const maxForeign = 0.25

// maxRetries bounds the re-runs of disturbed rounds (the run time stays
// bounded; a round still disturbed after them is kept and counted).
const maxRetries = 2

// retryBudget bounds the time spent re-running disturbed measurements in
// a run: on a machine that other sessions keep busy, re-runs would only
// stretch the run (a full run took 24 min with 123 of them).
const retryBudget = 60 * time.Second

// noMoreRetries says whether the try-th run of a measurement is its last.
func (r *runner) noMoreRetries(try int) bool {
	return try >= maxRetries || r.retryTime >= retryBudget
}

// quietBudget bounds the total time a run waits for other work to leave
// the machine alone; past it, measuring goes on and disturbed rounds are
// counted in the results' notes.
const quietBudget = 60 * time.Second

// waitQuiet waits until the machine is idle apart from the processes
// under test (which are idle between measurements), so that a measurement
// starts on a quiet machine.
func (r *runner) waitQuiet() {
	logged := false
	for r.waited < quietBudget {
		b0, _ := systemCPU()
		t0 := time.Now()
		time.Sleep(250 * time.Millisecond)
		b1, _ := systemCPU()
		el := time.Since(t0)
		load := float64(b1-b0) / float64(el)
		if load <= maxForeign/2 {
			return
		}
		if !logged {
			log.Printf("waiting for other work to leave the CPU (%.2f cores busy)", load)
			logged = true
		}
		r.waited += el
		time.Sleep(250 * time.Millisecond)
		r.waited += 250 * time.Millisecond
	}
}

// rounds runs f for every target, round after round, interleaved.
func (r *runner) rounds(what string, targets []*target, n int, f measureFunc, out map[string]Series) {
	vals := map[string][]float64{}
	meters := map[string]*cpuMeter{}
	errs := map[string]int{}
	ctx := context.Background()
	for round := 0; round < n; round++ {
		// Every other round runs the targets in reverse order, so that no
		// target always goes first (or right after a given other): the
		// i-th values of two targets still come from the same round.
		order := targets
		if round%2 == 1 {
			order = slices.Clone(targets)
			slices.Reverse(order)
		}
		for _, t := range order {
			secs := r.s.RateSeconds
			if strings.Contains(what, "handshake") {
				secs = r.s.HSSeconds
			}
			if meters[t.Name] == nil {
				meters[t.Name] = &cpuMeter{}
			}
			var smp sample
			for try := 0; ; try++ {
				r.waitQuiet()
				smp = f(ctx, t, secs)
				fg := foreign(smp.m0, smp.m1, t)
				if fg <= maxForeign || r.noMoreRetries(try) {
					if fg > maxForeign {
						r.disturbed++
					}
					log.Printf("%-16s %s round %d: %8.0f/s (errors %d, other load %.2f cores)", t.Name, what, round+1, smp.rate, smp.errs, fg)
					break
				}
				r.retried++
				r.retryTime += smp.m1.at.Sub(smp.m0.at)
				log.Printf("%-16s %s round %d: %8.0f/s disturbed (other load %.2f cores); again", t.Name, what, round+1, smp.rate, fg)
			}
			meters[t.Name].add(smp.m0, smp.m1, smp.work)
			vals[t.Name] = append(vals[t.Name], smp.rate)
			errs[t.Name] += smp.errs
		}
	}
	for name, v := range vals {
		out[name] = newSeries(v, errs[name])
	}
	r.saveCPU(what, meters, "µs/op", time.Microsecond)
}

// rate measures HEAD manifest requests per second over RateConns keep-alive
// connections, each with one request in flight (what docker's parallel
// layer checks look like), counting only after every connection is up and
// warm.
func (r *runner) rate(ctx context.Context, t *target, seconds float64) sample {
	return r.keepAlive(ctx, t, "HEAD", r.s.RateConns, seconds, nil)
}

// handshakes measures full TLS handshakes per second: HSWorkers clients
// each connect, handshake (no session resumption: no session cache), close.
func (r *runner) handshakes(ctx context.Context, t *target, seconds float64) sample {
	var count, errs atomic.Int64
	var counting, stop atomic.Bool
	var wg sync.WaitGroup
	var seq atomic.Int64
	cfgs := map[string]*tls.Config{}
	hosts := []string{t.Host}
	if t.Hosts > 0 {
		hosts = hosts[:0]
		for i := range t.Hosts {
			hosts = append(hosts, t.host(i))
		}
	}
	for _, h := range hosts {
		cfgs[h] = r.tls.config(h, false)
	}
	defer func() { r.hsDialers = (r.hsDialers + r.s.HSWorkers) % 2000 }()
	for w := 0; w < r.s.HSWorkers; w++ {
		wg.Add(1)
		d := sourceDialer(r.hsDialers + w)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				h := hosts[int(seq.Add(1))%len(hosts)]
				tc, err := dialTLSFrom(ctx, d, t.Addr, cfgs[h])
				if err != nil {
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				tc.Close()
				if counting.Load() {
					count.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	return r.timed(t, seconds, &count, &errs, &counting, &stop, &wg)
}

// latency sends sequential HEAD requests on one keep-alive connection per
// target, in blocks that alternate between targets.
func (r *runner) latency(ctx context.Context) {
	const blocks = 4
	per := max(r.s.LatencyN/blocks, 1)
	samples := map[string][]float64{}
	conns := map[string]*httpConn{}
	for _, t := range r.targets {
		conns[t.Name] = newHTTPConn(t, r.tls.config(t.Host, true), t.Host)
	}
	for b := 0; b < blocks; b++ {
		for _, t := range r.targets {
			r.waitQuiet()
			c := conns[t.Name]
			head := requestHead("HEAD", r.path(t, "/manifests/latest"), t.Host, -1, "")
			for i := -20; i < per; i++ { // 20 unrecorded warm-up requests per block
				start := time.Now()
				resp, err := c.request(ctx, head, nil, 0, true, nil)
				d := time.Since(start)
				if err != nil || resp.Status != 200 {
					continue
				}
				if i >= 0 {
					samples[t.Name] = append(samples[t.Name], float64(d.Nanoseconds())/1e3)
				}
			}
		}
	}
	for _, t := range r.targets {
		conns[t.Name].Close()
		s := samples[t.Name]
		r.res.Latency[t.Name] = Latency{N: len(s), P50us: percentile(s, 50), P99us: percentile(s, 99)}
		log.Printf("%-16s latency p50 %.0f µs p99 %.0f µs (n=%d)", t.Name, percentile(s, 50), percentile(s, 99), len(s))
	}
}

// idle opens IdleConns TLS connections, sends one HEAD on each (so each is
// an idle keep-alive connection as a docker client leaves it), and reports
// the server's RSS growth per connection.
func (r *runner) idle(ctx context.Context, t *target) (Idle, error) {
	n := r.s.IdleConns
	res := Idle{Conns: n}
	time.Sleep(time.Second)
	before, err := rssOf(t.PID, t.Tree)
	if err != nil {
		return res, err
	}
	res.RSSBefore = before
	var trimsBefore float64
	if t.Metrics != "" {
		m := scrapeMetrics(t.Metrics)
		res.HeapBefore, res.StackBefore = m["go_memstats_heap_inuse_bytes"], m["go_memstats_stack_inuse_bytes"]
		trimsBefore = m["nexmux_memory_trims_total"]
	}
	conns := make([]*httpConn, n)
	head := requestHead("HEAD", r.path(t, "/manifests/latest"), t.Host, -1, "")
	cfg := r.tls.config(t.Host, false)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c := newHTTPConn(t, cfg, t.Host)
				c.bufSize = 4 << 10 // 10,000 of them: the client's memory is not measured, but keep it small
				resp, err := c.request(ctx, head, nil, 0, true, nil)
				if err == nil && (resp.Status != 200 || c.tc == nil) {
					err = fmt.Errorf("status %d, connection closed %v", resp.Status, c.tc == nil)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		time.Sleep(time.Second)
	}()
	if firstErr != nil {
		return res, firstErr
	}
	// Let the servers settle (Go's scavenger returns freed pages in the
	// background); take the median of a few samples.
	var samples []float64
	time.Sleep(2 * time.Second)
	for range 5 {
		v, err := rssOf(t.PID, t.Tree)
		if err != nil {
			return res, err
		}
		samples = append(samples, float64(v))
		time.Sleep(300 * time.Millisecond)
	}
	res.RSSAfter = int64(median(samples))
	res.PerConnKiB = float64(res.RSSAfter-res.RSSBefore) / float64(n) / 1024
	if t.Metrics != "" {
		m := scrapeMetrics(t.Metrics)
		res.HeapAfter, res.StackAfter, res.Goroutines = m["go_memstats_heap_inuse_bytes"], m["go_memstats_stack_inuse_bytes"], m["go_goroutines"]
		res.Trims = m["nexmux_memory_trims_total"] - trimsBefore
	}
	// Were they really all still open? Re-use a sample.
	for i := 0; i < n; i += max(n/100, 1) {
		res.Checked++
		// roundTrip, not request: a closed connection must count as
		// closed, not be redialled.
		resp, _, err := conns[i].roundTrip(head, nil, 0, true, nil)
		if err == nil && resp.Status == 200 {
			res.Alive++
		}
	}
	log.Printf("%-16s idle: %d conns, RSS %d -> %d KiB, %.1f KiB/conn (%d/%d alive after)",
		t.Name, n, res.RSSBefore>>10, res.RSSAfter>>10, res.PerConnKiB, res.Alive, res.Checked)
	return res, nil
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(float64(len(s)-1)*p/100 + 0.5)
	return s[min(i, len(s)-1)]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// timed runs the counting window of a rate measurement: it zeroes the
// counters the workers bump, lets them count for seconds, marks CPU use
// around the window, then stops the workers and waits for them.
func (r *runner) timed(t *target, seconds float64, count, errs *atomic.Int64, counting, stop *atomic.Bool, wg *sync.WaitGroup) sample {
	count.Store(0)
	errs.Store(0)
	counting.Store(true)
	m0 := r.mark(t)
	start := time.Now()
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	got := count.Load()
	el := time.Since(start)
	m1 := r.mark(t)
	stop.Store(true)
	wg.Wait()
	return sample{rate: float64(got) / el.Seconds(), errs: int(errs.Load()), work: float64(got), m0: m0, m1: m1}
}
