package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The small-request matrix (issue 19): every target under several load
// generators, HEAD and GET of the ~250 B manifest, at a few connection
// counts. On loopback the kernel charges TCP work to whichever process
// happens to run, so a proxy's own CPU depends on the client; the whole
// machine's CPU per request (/proc/stat, everything but idle and iowait)
// does not, and it is the judged figure.

// Load generators.
const (
	genGo  = "go"  // benchtool's own client (client.go)
	genWrk = "wrk" // wrk 4.1.0 from Debian: GET only, see below
	genAb  = "ab"  // ApacheBench from Debian (apache2-utils): HEAD (-i) and GET
)

// genMethods says which methods each generator can measure. wrk 4.1.0
// (and h2load 1.52) wait for a HEAD response's Content-Length bytes of body
// that never come (0 requests in 2 s against every target), so the outside
// HEAD figures come from ab, which knows HEAD.
var genMethods = map[string][]string{
	genGo:  {"HEAD", "GET"},
	genWrk: {"GET"},
	genAb:  {"HEAD", "GET"},
}

// SmallCell is one (generator, method, connections, target) cell.
type SmallCell struct {
	Generator string `json:"generator"`
	Method    string `json:"method"`
	Conns     int    `json:"conns"`
	Target    string `json:"target"`
	Rate      Series `json:"rate"` // req/s per round
	// Machine is the whole machine's CPU per request (µs) of each round;
	// MachineUs is the run's: busy time of all rounds ÷ their requests,
	// less the CPU time of processes outside the bench (other sessions on
	// a shared machine: OthersUs), which MachineRawUs keeps.
	Machine      Series  `json:"machine_us"`
	MachineUs    float64 `json:"machine_us_per_req"`
	MachineRawUs float64 `json:"machine_raw_us_per_req"`
	OthersUs     float64 `json:"others_us_per_req"`
	ProxyUs      float64 `json:"proxy_us_per_req"` // the target's processes (nginx: master and workers)
	BackendUs    float64 `json:"backend_us_per_req"`
	ClientUs     float64 `json:"client_us_per_req"` // the load generator's process
	// Latency under this load (median over rounds), where the generator
	// reports it (benchtool, wrk, and ab through its -e file).
	P50us float64 `json:"p50_us,omitempty"`
	P99us float64 `json:"p99_us,omitempty"`
}

func cellKey(gen, method string, conns int) string {
	return fmt.Sprintf("%s %s %d", gen, method, conns)
}

// smallSample is one round of one cell.
type smallSample struct {
	reqs       float64
	seconds    float64
	errs       int
	p50, p99   float64 // µs, 0 when unknown
	m0, m1     cpuMark
	clientCPU  time.Duration // the generator's own process
	foreignCPU float64       // cores busy with other work
}

// smallJob is one cell to measure.
type smallJob struct {
	gen, method string
	conns       int
}

func (r *runner) smallJobs() []smallJob {
	var jobs []smallJob
	for _, g := range r.s.SmallGenerators {
		for _, m := range genMethods[g] {
			for _, c := range r.s.SmallConns {
				jobs = append(jobs, smallJob{g, m, c})
			}
		}
	}
	return jobs
}

// small measures the matrix: for each cell, SmallRounds interleaved rounds
// over the targets (every other round in reverse order).
func (r *runner) small(ctx context.Context) {
	for _, j := range r.smallJobs() {
		type acc struct {
			rates, mach, p50, p99 []float64
			busy, proxy, backend  time.Duration
			client, others        time.Duration
			reqs                  float64
			errs                  int
		}
		accs := map[string]*acc{}
		for round := 0; round < r.s.SmallRounds; round++ {
			order := slices.Clone(r.targets)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, t := range order {
				// No re-runs here (150 rounds would take too long): the other
				// sessions' CPU is measured and subtracted instead, and
				// counted in the notes.
				r.waitQuiet()
				smp := r.smallRound(ctx, t, j, r.s.SmallSeconds)
				if smp.foreignCPU > maxForeign {
					r.smallDisturbed++
				}
				a := accs[t.Name]
				if a == nil {
					a = &acc{}
					accs[t.Name] = a
				}
				rate := 0.0
				if smp.seconds > 0 {
					rate = smp.reqs / smp.seconds
				}
				others := smp.m1.others - smp.m0.others
				busy := smp.m1.busy - smp.m0.busy - others
				a.rates = append(a.rates, rate)
				if smp.reqs > 0 {
					a.mach = append(a.mach, float64(busy)/float64(time.Microsecond)/smp.reqs)
				}
				if smp.p50 > 0 {
					a.p50, a.p99 = append(a.p50, smp.p50), append(a.p99, smp.p99)
				}
				a.busy += busy
				a.proxy += smp.m1.server - smp.m0.server
				a.backend += smp.m1.backend - smp.m0.backend
				a.client += smp.clientCPU
				a.others += others
				a.reqs += smp.reqs
				a.errs += smp.errs
				log.Printf("%-16s %-12s round %d: %8.0f req/s, machine %5.1f µs/req (others' processes %.1f more), p50 %.0f µs (errors %d, other load %.2f cores)",
					t.Name, cellKey(j.gen, j.method, j.conns), round+1, rate, float64(busy)/float64(time.Microsecond)/max(smp.reqs, 1),
					float64(others)/float64(time.Microsecond)/max(smp.reqs, 1), smp.p50, smp.errs, smp.foreignCPU)
			}
		}
		for _, t := range r.targets {
			a := accs[t.Name]
			if a == nil {
				continue
			}
			c := SmallCell{Generator: j.gen, Method: j.method, Conns: j.conns, Target: t.Name,
				Rate: newSeries(a.rates, a.errs), Machine: newSeries(a.mach, 0), P50us: median(a.p50), P99us: median(a.p99)}
			if a.reqs > 0 {
				per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / a.reqs }
				c.MachineUs, c.BackendUs, c.ClientUs = per(a.busy), per(a.backend), per(a.client)
				c.MachineRawUs, c.OthersUs = per(a.busy+a.others), per(a.others)
				if t.PID != 0 {
					c.ProxyUs = per(a.proxy)
				}
			}
			r.res.Small = append(r.res.Small, c)
		}
	}
	// The keep-alive row of the main table and its CPU line are the Go
	// generator's HEAD at RateConns: the same figures as before the matrix.
	cpu := map[string]CPU{}
	for _, c := range r.res.Small {
		if c.Generator == genGo && c.Method == "HEAD" && c.Conns == r.s.RateConns {
			r.res.Rate[c.Target] = c.Rate
			cpu[c.Target] = CPU{Unit: "µs/op", Server: c.ProxyUs, Backend: c.BackendUs, Client: c.ClientUs}
		}
	}
	if len(cpu) > 0 {
		r.res.CPU["HEAD manifest"] = cpu
	}
}

// smallRound runs one round of a cell against t.
func (r *runner) smallRound(ctx context.Context, t *target, j smallJob, seconds float64) smallSample {
	var smp smallSample
	switch j.gen {
	case genGo:
		smp = r.goLoad(ctx, t, j.method, j.conns, seconds)
	default:
		smp = r.toolLoad(t, j, seconds)
	}
	if j.gen == genGo {
		// The generator is this process: its CPU is in the marks.
		smp.clientCPU = smp.m1.client - smp.m0.client
		smp.m1.client = smp.m0.client
	}
	el := smp.m1.at.Sub(smp.m0.at)
	if el > 0 {
		// Other work is what the other processes' times show (the old
		// estimate, busy minus ours, also counted the kernel's loopback
		// work charged to no process).
		smp.foreignCPU = max(float64(smp.m1.others-smp.m0.others)/float64(el), 0)
	}
	return smp
}

// goLoad is benchtool's own generator: conns keep-alive connections, one
// request in flight on each, counting after every connection is up and
// warm; latency is that of every counted request.
func (r *runner) goLoad(ctx context.Context, t *target, method string, n int, seconds float64) smallSample {
	lat := make([][]float64, n)
	for i := range lat {
		lat[i] = make([]float64, 0, 1<<16)
	}
	s := r.keepAlive(ctx, t, method, n, seconds, lat)
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	return smallSample{reqs: s.work, seconds: s.m1.at.Sub(s.m0.at).Seconds(), errs: s.errs, m0: s.m0, m1: s.m1,
		p50: percentile(all, 50), p99: percentile(all, 99)}
}

// keepAlive runs n keep-alive connections with one request of method in
// flight on each, and counts after every connection is up and warm. With
// lat (one slice per connection) it records every counted request's
// latency in µs.
func (r *runner) keepAlive(ctx context.Context, t *target, method string, n int, seconds float64, lat [][]float64) sample {
	conns := make([]*httpConn, n)
	heads := make([][]byte, n)
	for i := range conns {
		host := t.host(i)
		conns[i] = newHTTPConn(t, r.tls.config(host, false), host)
		heads[i] = requestHead(method, r.path(t, "/manifests/latest"), host, -1, "Accept: application/vnd.docker.distribution.manifest.v2+json\r\n")
	}
	isHead := method == "HEAD"
	var count, errs atomic.Int64
	var counting, stop atomic.Bool
	var wg, ready sync.WaitGroup
	ready.Add(n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			first := true
			for !stop.Load() {
				var start time.Time
				if lat != nil {
					start = time.Now()
				}
				resp, err := c.request(ctx, heads[i], nil, 0, isHead, nil)
				if err != nil || resp.Status != 200 {
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
				} else if counting.Load() {
					count.Add(1)
					if lat != nil {
						lat[i] = append(lat[i], float64(time.Since(start).Nanoseconds())/1e3)
					}
				}
				if first {
					first = false
					ready.Done()
				}
			}
		}()
	}
	ready.Wait()
	time.Sleep(300 * time.Millisecond) // warm-up
	for i := range lat {
		lat[i] = lat[i][:0] // nothing is appended before counting starts
	}
	return r.timed(t, seconds, &count, &errs, &counting, &stop, &wg)
}

// toolLoad runs wrk or ab for seconds against t. The counted window is the
// tool's whole life (its connection set-up included: conns handshakes
// against thousands of requests), so the CPU marks bracket the process.
func (r *runner) toolLoad(t *target, j smallJob, seconds float64) smallSample {
	url := fmt.Sprintf("https://%s:%s%s", t.Host, portOf(t.Addr), r.path(t, "/manifests/latest"))
	var cmd *exec.Cmd
	var abCSV string
	secs := strconv.Itoa(max(int(seconds+0.5), 1))
	switch j.gen {
	case genWrk:
		// wrk resolves the URL's host (bench.sh maps it to 127.0.0.1 in
		// /etc/hosts) and sends it as SNI; the script sets the Host
		// header to the bare name as docker sends it, and the method.
		threads := min(2, j.conns)
		cmd = exec.Command(r.wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(j.conns), "-d", secs+"s", "--latency",
			"-s", r.wrkScript(t.Host, j.method), url)
	case genAb:
		// ab connects to the URL's address and takes SNI from the Host
		// header; -k: keep-alive (HTTP/1.0 with Connection: Keep-Alive).
		args := []string{"-k", "-q", "-c", strconv.Itoa(j.conns), "-t", secs, "-n", "100000000",
			"-H", "Host: " + t.Host, "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json"}
		if j.method == "HEAD" {
			args = append(args, "-i")
		}
		// -e: its percentiles to the microsecond (the report has whole ms).
		csvFile, err := os.CreateTemp("", "ab-*.csv")
		if err != nil {
			log.Printf("ab: %v", err)
			return smallSample{errs: 1}
		}
		csvFile.Close()
		abCSV = csvFile.Name()
		defer os.Remove(abCSV)
		args = append(args, "-e", abCSV)
		cmd = exec.Command(r.ab, append(args, "https://"+t.Addr+r.path(t, "/manifests/latest"))...)
	}
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	m0 := r.mark(t)
	err := cmd.Run()
	m1 := r.mark(t)
	smp := smallSample{m0: m0, m1: m1, seconds: m1.at.Sub(m0.at).Seconds()}
	if cmd.ProcessState != nil {
		smp.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		log.Printf("%s %s: %v: %s", j.gen, t.Name, err, out.String())
		smp.errs++
		return smp
	}
	var res toolResult
	if j.gen == genWrk {
		res, err = parseWrk(out.String())
	} else if res, err = parseAb(out.String()); err == nil {
		var csv []byte
		if csv, err = os.ReadFile(abCSV); err == nil {
			res.P50us, res.P99us, err = parseAbPercentiles(string(csv))
		}
	}
	if err != nil {
		log.Printf("%s %s: %v: %s", j.gen, t.Name, err, out.String())
		smp.errs++
		return smp
	}
	// The rate is the tool's own (requests over its timed run); the CPU
	// per request divides the marks' window by the same requests.
	smp.reqs, smp.errs, smp.p50, smp.p99 = res.Requests, res.Errors, res.P50us, res.P99us
	if res.Seconds > 0 {
		smp.seconds = res.Seconds
	}
	return smp
}

func portOf(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		p = addr[i+1:]
	}
	return p
}

// wrkScript writes (once) the Lua script that sets wrk's method and headers.
func (r *runner) wrkScript(host, method string) string {
	r.scriptMu.Lock()
	defer r.scriptMu.Unlock()
	path := filepath.Join(r.scriptDir, fmt.Sprintf("wrk-%s-%s.lua", method, host))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	s := fmt.Sprintf("wrk.method = %q\nwrk.headers[\"Host\"] = %q\nwrk.headers[\"Accept\"] = \"application/vnd.docker.distribution.manifest.v2+json\"\n", method, host)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		log.Printf("wrk script: %v", err)
	}
	return path
}

// toolResult is what a load generator's report says.
type toolResult struct {
	Requests float64
	Seconds  float64
	Errors   int // socket errors and non-2xx/3xx answers
	P50us    float64
	P99us    float64
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m),`)
	wrkPct     = regexp.MustCompile(`(?m)^\s*(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkSockErr = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	abDone     = regexp.MustCompile(`(?m)^Complete requests:\s+(\d+)`)
	abFailed   = regexp.MustCompile(`(?m)^Failed requests:\s+(\d+)`)
	abNon2xx   = regexp.MustCompile(`(?m)^Non-2xx responses:\s+(\d+)`)
	abTime     = regexp.MustCompile(`(?m)^Time taken for tests:\s+([0-9.]+) seconds`)
)

func durUs(v, unit string) float64 {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "ms":
		return f * 1e3
	case "s":
		return f * 1e6
	case "m":
		return f * 60e6
	}
	return f
}

// parseWrk reads wrk's report (with --latency).
func parseWrk(out string) (toolResult, error) {
	var res toolResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return res, fmt.Errorf("wrk: no \"N requests in T\" line")
	}
	res.Requests, _ = strconv.ParseFloat(m[1], 64)
	res.Seconds = durUs(m[2], m[3]) / 1e6
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		if p[1] == "50" {
			res.P50us = durUs(p[2], p[3])
		} else {
			res.P99us = durUs(p[2], p[3])
		}
	}
	if e := wrkSockErr.FindStringSubmatch(out); e != nil {
		for _, v := range e[1:] {
			n, _ := strconv.Atoi(v)
			res.Errors += n
		}
	}
	if e := wrkNon2xx.FindStringSubmatch(out); e != nil {
		// counted among the requests: an error page is not a manifest
		n, _ := strconv.Atoi(e[1])
		res.Errors += n
		res.Requests -= float64(n)
	}
	if res.Requests <= 0 {
		return res, fmt.Errorf("wrk: 0 requests answered 2xx or 3xx")
	}
	return res, nil
}

// parseAb reads ApacheBench's report.
func parseAb(out string) (toolResult, error) {
	var res toolResult
	m := abDone.FindStringSubmatch(out)
	t := abTime.FindStringSubmatch(out)
	if m == nil || t == nil {
		return res, fmt.Errorf("ab: no \"Complete requests\" or \"Time taken for tests\" line")
	}
	res.Requests, _ = strconv.ParseFloat(m[1], 64)
	res.Seconds, _ = strconv.ParseFloat(t[1], 64)
	for _, re := range []*regexp.Regexp{abFailed, abNon2xx} {
		if e := re.FindStringSubmatch(out); e != nil {
			n, _ := strconv.Atoi(e[1])
			res.Errors += n
		}
	}
	// Failed requests are counted among the complete ones.
	res.Requests -= float64(res.Errors)
	if res.Requests <= 0 {
		return res, fmt.Errorf("ab: no successful request")
	}
	return res, nil
}

// parseAbPercentiles reads the p50 and p99 of ab's -e file: a header,
// then "percent,milliseconds" for 0 to 99, to the microsecond.
func parseAbPercentiles(csv string) (p50, p99 float64, err error) {
	for _, line := range strings.Split(csv, "\n")[1:] {
		pct, ms, ok := strings.Cut(strings.TrimSpace(line), ",")
		if !ok {
			continue
		}
		v, perr := strconv.ParseFloat(ms, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("ab -e: line %q: %v", line, perr)
		}
		switch pct {
		case "50":
			p50 = v * 1000
		case "99":
			p99 = v * 1000
		}
	}
	if p50 <= 0 || p99 <= 0 {
		return 0, 0, fmt.Errorf("ab -e: no 50 or 99 percent line in %d bytes", len(csv))
	}
	return p50, p99, nil
}

// parseProcStat reads the first ("cpu") line of /proc/stat: busy is every
// field but idle and iowait (user nice system irq softirq steal; guest
// time is already inside user and nice), idle is idle + iowait.
func parseProcStat(data string) (busy, idle time.Duration, err error) {
	line, _, _ := strings.Cut(data, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", line)
	}
	var v [8]int64
	for i := range v {
		if i+1 >= len(f) {
			break // older kernels have fewer fields
		}
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: field %d of %q: %w", i+1, line, err)
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	return tick(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]), tick(v[3] + v[4]), nil
}

// resumed measures resumed TLS handshakes per second: like handshakes, but
// each client keeps a session cache primed with a session ticket (TLS 1.3
// PSK with a fresh X25519 share, what Go's client offers); only handshakes
// that did resume are counted, the others are errors.
func (r *runner) resumed(ctx context.Context, t *target, seconds float64) sample {
	var count, errs atomic.Int64
	var counting, stop atomic.Bool
	var wg sync.WaitGroup
	defer func() { r.hsDialers = (r.hsDialers + r.s.HSWorkers) % 2000 }()
	head := requestHead("HEAD", r.path(t, "/manifests/latest"), t.Host, -1, "")
	for w := 0; w < r.s.HSWorkers; w++ {
		cfg := r.tls.config(t.Host, false)
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		d := sourceDialer(r.hsDialers + w)
		// Prime: the ticket arrives after the handshake, read with the
		// first response.
		c := newHTTPConn(t, cfg, t.Host)
		if _, err := c.request(ctx, head, nil, 0, true, nil); err != nil {
			errs.Add(1)
		}
		c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				tc, err := dialTLSFrom(ctx, d, t.Addr, cfg)
				if err != nil {
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				ok := tc.ConnectionState().DidResume
				tc.Close()
				if !counting.Load() {
					continue
				}
				if ok {
					count.Add(1)
				} else {
					errs.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	return r.timed(t, seconds, &count, &errs, &counting, &stop, &wg)
}

// profiles takes a CPU profile of every target that serves pprof under each
// load at the largest connection count: the load runs one second longer
// than the profile, which starts half a second in.
func (r *runner) profiles(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	const secs = 5
	conns := slices.Max(r.s.SmallConns)
	for _, j := range r.smallJobs() {
		if j.conns != conns {
			continue
		}
		for _, t := range r.targets {
			if t.PProf == "" {
				continue
			}
			r.waitQuiet()
			name := filepath.Join(dir, fmt.Sprintf("%s-%s-%s-%d.pprof", t.Name, j.gen, j.method, j.conns))
			done := make(chan error, 1)
			go func() {
				time.Sleep(500 * time.Millisecond)
				done <- fetchTo(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", t.PProf, secs), name)
			}()
			smp := r.smallRound(ctx, t, smallJob{j.gen, j.method, j.conns}, secs+1)
			if err := <-done; err != nil {
				return fmt.Errorf("%s: profile: %w", t.Name, err)
			}
			log.Printf("%-16s %-12s profiled: %.0f req/s, machine %.1f µs/req, proxy %.1f µs/req -> %s", t.Name, cellKey(j.gen, j.method, j.conns),
				smp.reqs/smp.seconds, float64(smp.m1.busy-smp.m0.busy)/1e3/smp.reqs, float64(smp.m1.server-smp.m0.server)/1e3/smp.reqs, name)
		}
	}
	return nil
}

func fetchTo(url, path string) error {
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
